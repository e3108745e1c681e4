"""foldatlas.models.kernels: the argument mapping to cuEquivariance's layouts, checked on the CPU through the
reference implementations against transformers' own triangle modules."""

from __future__ import annotations

import types
from contextlib import nullcontext

import pytest

torch = pytest.importorskip("torch")
esmfold = pytest.importorskip("transformers.models.esm.modeling_esmfold")

from foldatlas.models import kernels  # noqa: E402
from foldatlas.models.kernels import (  # noqa: E402
    attention_kernel_supported,
    install_kernels,
    kernel_calls,
    kernels_available,
    multiplicative_kernel_supported,
    triangle_attention_forward,
    triangle_attention_reference,
    triangle_multiplicative_forward,
    triangle_multiplicative_update_reference,
    uninstall_kernels,
)

ATOL = 1e-5  # the attention scales q by 1/sqrt(D) where transformers divides by sqrt(D): ~1e-6 apart
ATOL_MUL = 1e-6  # the multiplicative update repeats transformers' operations: equal to the last bit here


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: one thread is faster, and immune to a busy machine's oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomise(module, std=0.2):
    """Every parameter drawn (transformers zero-initialises linear_o, linear_z...), so that mappings can fail."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            torch.nn.init.normal_(p, mean=1.0 if ("layer_norm" in name and name.endswith("weight")) else 0.0,
                                  std=std)
    return module.eval()


def _attention(pair_dim, heads, head_dim, starting, seed=0):
    torch.manual_seed(seed)
    return _randomise(esmfold.EsmFoldTriangleAttention(pair_dim, head_dim, heads, starting=starting, inf=1e9))


def _multiplicative(pair_dim, outgoing, seed=0):
    torch.manual_seed(seed)
    config = types.SimpleNamespace(pairwise_state_dim=pair_dim)
    return _randomise(esmfold.EsmFoldTriangleMultiplicativeUpdate(config, _outgoing=outgoing))


def _inputs(length, pair_dim, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn((batch, length, length, pair_dim), generator=g)
    seq = torch.ones(batch, length)
    seq[-1, length - max(2, length // 4):] = 0  # padding in the last sequence
    return z, seq[:, :, None] * seq[:, None, :]


def _mask(kind, pair_mask, seed=2):
    """The padding mask (symmetric), an asymmetric random one (catches a mask not transposed with ``x``), or None."""
    if kind == "padding":
        return pair_mask
    if kind == "random":
        g = torch.Generator().manual_seed(seed)
        return (torch.rand(pair_mask.shape, generator=g) > 0.3).float()
    return None


def _max_diff(a, b):
    return float((a.float() - b.float()).abs().max())


# (pair dim, heads, head dim, length)
SHAPES = [(32, 4, 8, 19), (128, 4, 32, 12)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "c%d_h%dx%d_L%d" % s)
@pytest.mark.parametrize("starting", [True, False], ids=["start", "end"])
@pytest.mark.parametrize("chunk_size", [None, 5], ids=["whole", "chunked"])
@pytest.mark.parametrize("masked", ["padding", "random", "none"])
def test_attention_wrapper_equals_transformers(shape, starting, chunk_size, masked):
    pair_dim, heads, head_dim, length = shape
    module = _attention(pair_dim, heads, head_dim, starting)
    z, mask = _inputs(length, pair_dim)
    mask = _mask(masked, mask)
    with torch.no_grad():
        expected = module(z, mask=mask, chunk_size=chunk_size)
        got = triangle_attention_forward(module, z, mask=mask, chunk_size=chunk_size, use_kernel=None)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert float(expected.abs().max()) > 0.5  # a real, non-trivial update
    assert _max_diff(got, expected) < ATOL


@pytest.mark.parametrize("pair_dim,length", [(32, 17), (128, 9)])
@pytest.mark.parametrize("outgoing", [True, False], ids=["outgoing", "incoming"])
@pytest.mark.parametrize("masked", ["padding", "random", "none"])
def test_multiplicative_wrapper_equals_transformers(pair_dim, length, outgoing, masked):
    module = _multiplicative(pair_dim, outgoing)
    z, mask = _inputs(length, pair_dim)
    mask = _mask(masked, mask)
    with torch.no_grad():
        expected = module(z, mask=mask)
        got = triangle_multiplicative_forward(module, z, mask=mask)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert float(expected.abs().max()) > 0.5
    assert _max_diff(got, expected) < ATOL_MUL


@pytest.mark.parametrize("kind", ["start", "end", "outgoing", "incoming"])
def test_bfloat16_autocast_matches_transformers_under_autocast(kind):
    pair_dim, length = 32, 15
    z, mask = _inputs(length, pair_dim)
    if kind in ("start", "end"):
        module = _attention(pair_dim, 4, 8, kind == "start")

        def ours():
            return triangle_attention_forward(module, z, mask=mask, chunk_size=4)

        def theirs():
            return module(z, mask=mask, chunk_size=4)
    else:
        module = _multiplicative(pair_dim, kind == "outgoing")

        def ours():
            return triangle_multiplicative_forward(module, z, mask=mask)

        def theirs():
            return module(z, mask=mask)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got, expected = ours(), theirs()
    with torch.no_grad():
        exact = theirs()
    assert got.dtype == expected.dtype == torch.bfloat16
    scale = float(exact.abs().max())
    # bfloat16 keeps 8 bits: allow a few of its roundings of the largest value, and check that both are as
    # close to the float32 result as they are to each other (so the comparison is not trivially loose).
    assert _max_diff(got, expected) < 0.03 * scale
    assert _max_diff(got, exact) < 0.05 * scale


def test_mapping_errors_would_be_caught():
    """The tolerance of the tests above is far below what a layout mistake produces."""
    pair_dim, heads, head_dim, length = 32, 4, 8, 13
    z, mask = _inputs(length, pair_dim)
    start = _attention(pair_dim, heads, head_dim, True)
    with torch.no_grad():
        expected = start(z, mask=mask)
        # the same weights used as the ending node: the transposes matter
        start.starting = False
        wrong_direction = triangle_attention_forward(start, z, mask=mask)
        start.starting = True
        # the triangle bias transposed (bias[q, k] read as bias[k, q])
        original = kernels.triangle_attention_reference
        kernels.triangle_attention_reference = lambda q, k, v, bias, mask=None, scale=None: original(
            q, k, v, bias.transpose(-1, -2), mask, scale)
        try:
            wrong_bias = triangle_attention_forward(start, z, mask=mask)
        finally:
            kernels.triangle_attention_reference = original
        # the scale applied twice (the module's 1/sqrt(D) and the kernel's default)
        kernels.triangle_attention_reference = lambda q, k, v, bias, mask=None, scale=None: original(
            q * scale, k, v, bias, mask, scale)
        try:
            wrong_scale = triangle_attention_forward(start, z, mask=mask)
        finally:
            kernels.triangle_attention_reference = original
    for wrong in (wrong_direction, wrong_bias, wrong_scale):
        assert _max_diff(wrong, expected) > 1000 * ATOL

    out = _multiplicative(pair_dim, True)
    args = kernels._multiplicative_arguments(out)
    with torch.no_grad():
        expected = out(z, mask=mask)
        swapped = dict(args, p_in_weight=args["p_in_weight"].roll(pair_dim, 0),
                       g_in_weight=args["g_in_weight"].roll(pair_dim, 0))  # b's rows first
        incoming = dict(args, direction="incoming")
        no_bias = dict(args, p_in_bias=None, g_in_bias=None)
        for wrong in (swapped, incoming, no_bias):
            got = triangle_multiplicative_update_reference(z, mask=mask, **wrong)
            assert _max_diff(got, expected) > 1000 * ATOL
        right = triangle_multiplicative_update_reference(z, mask=mask, **args)
    assert _max_diff(right, expected) < ATOL_MUL


def test_references_follow_the_documented_formulas():
    """Checked against einsum spellings of cuEquivariance's docstrings, independently of transformers."""
    g = torch.Generator().manual_seed(3)
    B, N, H, S, D = 2, 5, 3, 7, 4
    q, k, v = (torch.randn((B, N, H, S, D), generator=g) for _ in range(3))
    bias = torch.randn((B, 1, H, S, S), generator=g)
    mask = torch.rand((B, N, 1, 1, S), generator=g) > 0.3
    mask[..., 0] = True
    scale = 0.37
    logits = scale * torch.einsum("bnhqd,bnhkd->bnhqk", q, k) + bias
    logits = torch.where(mask, logits, torch.tensor(-1e9))
    expected = torch.einsum("bnhqk,bnhkd->bnhqd", logits.softmax(-1), v)
    assert _max_diff(triangle_attention_reference(q, k, v, bias, mask, scale), expected) < 1e-6
    default = triangle_attention_reference(q, k, v, bias)  # scale 1/sqrt(D), no mask
    plain = torch.einsum("bnhqk,bnhkd->bnhqd", (torch.einsum("bnhqd,bnhkd->bnhqk", q, k) / 2 + bias).softmax(-1), v)
    assert _max_diff(default, plain) < 1e-6

    C, Dh, L = 8, 6, 5
    x = torch.randn((B, L, L, C), generator=g)
    pair_mask = (torch.rand((B, L, L), generator=g) > 0.2).float()
    w = dict(norm_in_weight=torch.randn(C, generator=g), norm_in_bias=torch.randn(C, generator=g),
             p_in_weight=torch.randn((2 * Dh, C), generator=g), p_in_bias=torch.randn(2 * Dh, generator=g),
             g_in_weight=torch.randn((2 * Dh, C), generator=g), g_in_bias=torch.randn(2 * Dh, generator=g),
             norm_out_weight=torch.randn(Dh, generator=g), norm_out_bias=torch.randn(Dh, generator=g),
             p_out_weight=torch.randn((C, Dh), generator=g), p_out_bias=torch.randn(C, generator=g),
             g_out_weight=torch.randn((C, C), generator=g), g_out_bias=torch.randn(C, generator=g))
    xn = torch.nn.functional.layer_norm(x, (C,), w["norm_in_weight"], w["norm_in_bias"], 1e-5)
    proj = xn @ w["p_in_weight"].T + w["p_in_bias"]
    gate = torch.sigmoid(xn @ w["g_in_weight"].T + w["g_in_bias"])
    a, b = (proj * gate * pair_mask[..., None]).split(Dh, dim=-1)
    for direction, spelling in (("outgoing", "bikd,bjkd->bijd"), ("incoming", "bkid,bkjd->bijd")):
        p = torch.nn.functional.layer_norm(torch.einsum(spelling, a, b), (Dh,), w["norm_out_weight"],
                                           w["norm_out_bias"], 1e-5)
        expected = (p @ w["p_out_weight"].T + w["p_out_bias"]) * torch.sigmoid(xn @ w["g_out_weight"].T
                                                                                + w["g_out_bias"])
        got = triangle_multiplicative_update_reference(x, direction, pair_mask, **w)
        assert _max_diff(got, expected) < 1e-5


def test_kernel_branch_argument_layouts(monkeypatch):
    """The kernel branch, run on the CPU with a stand-in that checks cuEquivariance's layouts."""
    seen = {"attention": 0, "multiplicative": 0}

    def fake_attention(q, k, v, bias, mask=None, scale=None, return_aux=False, *, kv_lengths=None):
        B, N, H, S, D = q.shape
        assert k.shape == v.shape == (B, N, H, S, D)
        assert bias.shape == (B, 1, H, S, S)
        assert mask is None or (mask.shape == (B, N, 1, 1, S) and mask.dtype == torch.bool)
        assert scale == pytest.approx(D ** -0.5)
        seen["attention"] += 1
        return triangle_attention_reference(q, k, v, bias, mask, scale)

    def fake_multiplicative(x, direction="outgoing", mask=None, **weights):
        B, N, N2, C = x.shape
        assert N == N2 and x.is_contiguous()
        assert mask.shape == (B, N, N) and mask.dtype == x.dtype
        assert weights["p_in_weight"].shape == weights["g_in_weight"].shape == (2 * C, C)
        assert weights["p_in_bias"].shape == weights["g_in_bias"].shape == (2 * C,)
        assert weights["p_out_weight"].shape == weights["g_out_weight"].shape == (C, C)
        seen["multiplicative"] += 1
        return triangle_multiplicative_update_reference(x, direction, mask, **weights)

    fakes = {kernels._ATTENTION: fake_attention, kernels._MULTIPLICATIVE: fake_multiplicative}
    monkeypatch.setattr(kernels, "_kernel", lambda op, device: fakes[op])
    monkeypatch.setenv("CUEQ_TRIATTN_FALLBACK_THRESHOLD", "4")
    monkeypatch.setenv("CUEQ_TRIMUL_FALLBACK_THRESHOLD", "4")
    z, mask = _inputs(11, 128)
    kernel_calls(reset=True)
    with torch.no_grad():
        for starting in (True, False):
            module = _attention(128, 4, 32, starting)
            for chunk, pair_mask in ((None, mask), (3, mask), (None, None)):
                assert _max_diff(triangle_attention_forward(module, z, pair_mask, chunk, use_kernel=True),
                                 module(z, mask=pair_mask, chunk_size=chunk)) < ATOL
        for outgoing in (True, False):
            module = _multiplicative(128, outgoing)
            assert _max_diff(triangle_multiplicative_forward(module, z, mask, use_kernel=True),
                             module(z, mask=mask)) < ATOL
        # an unsupported shape (pair width 48) falls back to the reference, without error
        module = _multiplicative(48, True)
        z48, _ = _inputs(11, 48)
        triangle_multiplicative_forward(module, z48, mask, use_kernel=True)
    assert seen == {"attention": 2 * (1 + 4 + 1), "multiplicative": 2}  # one kernel call per row chunk
    assert kernel_calls() == {"attention_kernel": 6, "attention_pytorch": 0,
                              "multiplicative_kernel": 2, "multiplicative_pytorch": 1}


def test_a_failing_kernel_falls_back_to_pytorch_once_and_for_all(monkeypatch):
    """A kernel that raises (one that does not compile or launch on a GPU) warns once; PyTorch runs the call and
    every later one, with the same results."""
    calls = {"attention": 0, "multiplicative": 0}

    def broken(op):
        def kernel(*args, **kwargs):
            calls[op] += 1
            raise RuntimeError("no kernel image is available for execution on the device")
        return kernel

    fakes = {kernels._ATTENTION: broken("attention"), kernels._MULTIPLICATIVE: broken("multiplicative")}
    monkeypatch.setattr(kernels, "_FAILED", {})
    monkeypatch.setattr(kernels, "_cuda_capable", lambda device: True)
    monkeypatch.setattr(kernels, "_library", lambda: fakes)
    monkeypatch.setenv("CUEQ_TRIATTN_FALLBACK_THRESHOLD", "4")
    monkeypatch.setenv("CUEQ_TRIMUL_FALLBACK_THRESHOLD", "4")
    monkeypatch.setenv("FOLDATLAS_KERNEL_MIN_LENGTH", "4")
    z, mask = _inputs(11, 128)
    attention, multiplicative = _attention(128, 4, 32, True), _multiplicative(128, True)
    with torch.no_grad():
        for _ in range(2):
            with pytest.warns(RuntimeWarning, match="kernel failed") if calls["attention"] == 0 else nullcontext():
                got = triangle_attention_forward(attention, z, mask, 3)
            assert _max_diff(got, attention(z, mask=mask, chunk_size=3)) < ATOL
            with pytest.warns(RuntimeWarning, match="kernel failed") if calls["multiplicative"] == 0 else \
                    nullcontext():
                got = triangle_multiplicative_forward(multiplicative, z, mask)
            assert _max_diff(got, multiplicative(z, mask=mask)) < ATOL
    assert calls == {"attention": 1, "multiplicative": 1}  # each kernel tried once
    assert set(kernels.kernel_failures()) == {"attention", "multiplicative"}


def test_short_inputs_take_pytorch_unless_the_kernel_is_forced(monkeypatch):
    """Below kernel_min_length() a fold is launch-bound and the kernels slow it down (measured on an H200): the
    automatic choice takes PyTorch there, use_kernel=True still takes the kernel, and the kernel sees a float32
    bias."""
    seen = []

    def fake_attention(q, k, v, bias, mask=None, scale=None):
        seen.append(bias.dtype)
        return triangle_attention_reference(q, k, v, bias, mask=mask, scale=scale)

    fakes = {kernels._ATTENTION: fake_attention, kernels._MULTIPLICATIVE: lambda *a, **k: 1 / 0}
    monkeypatch.setattr(kernels, "_kernel", lambda op, device: fakes[op])
    monkeypatch.setenv("CUEQ_TRIATTN_FALLBACK_THRESHOLD", "4")
    monkeypatch.setenv("CUEQ_TRIMUL_FALLBACK_THRESHOLD", "4")
    assert kernels.kernel_min_length() == kernels.KERNEL_MIN_LENGTH == 320
    z, mask = _inputs(11, 128)
    module = _attention(128, 4, 32, True)
    kernel_calls(reset=True)
    with torch.no_grad():
        auto = triangle_attention_forward(module, z, mask)  # 11 < 320: PyTorch
        assert kernel_calls()["attention_kernel"] == 0 and not seen
        forced = triangle_attention_forward(module, z, mask, use_kernel=True)
        assert kernel_calls()["attention_kernel"] == 1
        monkeypatch.setenv("FOLDATLAS_KERNEL_MIN_LENGTH", "8")
        half = triangle_attention_forward(module.half(), z.half(), mask.half())  # 11 >= 8: the kernel
    assert kernel_calls()["attention_kernel"] == 2
    assert seen == [torch.float32, torch.float32]  # the half-precision call's bias given in float32 too
    assert half.dtype == torch.float16
    assert _max_diff(auto, forced) < ATOL


def test_supported_shapes():
    f32, bf16, f16, f64 = torch.float32, torch.bfloat16, torch.float16, torch.float64
    assert attention_kernel_supported(256, 32, f32)  # ESMFold: 4 heads of 32
    assert attention_kernel_supported(256, 32, bf16)
    assert not attention_kernel_supported(100, 32, f32)  # the library's own PyTorch path below 101
    assert attention_kernel_supported(101, 32, f32)
    assert not attention_kernel_supported(256, 64, f32)  # float32: D <= 32
    assert attention_kernel_supported(256, 64, bf16)
    assert not attention_kernel_supported(256, 12, bf16)  # 16 bits: D % 8
    assert not attention_kernel_supported(150, 16, bf16) and attention_kernel_supported(201, 16, bf16)
    assert not attention_kernel_supported(256, 32, f64)
    assert multiplicative_kernel_supported(256, 128, 128, f32)
    assert multiplicative_kernel_supported(256, 128, 128, f16)
    assert not multiplicative_kernel_supported(100, 128, 128, f32)
    assert not multiplicative_kernel_supported(256, 48, 48, bf16)
    assert not multiplicative_kernel_supported(256, 128, 128, f64)


def test_no_kernels_on_cpu():
    assert kernels_available(torch.device("cpu")) is False
    assert kernels_available("cpu") is False
    if not torch.cuda.is_available():
        assert kernels_available("cuda") is False
    module = _attention(32, 4, 8, True)
    z, mask = _inputs(5, 32)
    with pytest.raises(RuntimeError):
        triangle_attention_forward(module, z, mask, use_kernel=True)


@pytest.fixture(scope="module")
def tiny_folding_model():
    import transformers

    from foldatlas.models.random_checkpoint import esmfold_config_dict

    config = transformers.EsmConfig(**esmfold_config_dict("tiny"))
    torch.manual_seed(0)
    model = transformers.EsmForProteinFolding(config).eval()
    model.trunk.config.max_recycles = 2  # infer() runs max_recycles trunk passes: two keep the recycling path
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.trunk.blocks.named_parameters():
            torch.nn.init.normal_(p, mean=1.0 if ("norm" in name and name.endswith("weight")) else 0.0, std=0.1)
    return model


SEQUENCES = ["MKTAYIAKQRQISFVKSHFSRQLEERLG", "GSHMLEDPVA"]  # padding in the second


def _fold(model):
    with torch.no_grad():
        out = model.infer(SEQUENCES)
    return {key: out[key].clone() for key in ("positions", "plddt", "ptm_logits", "distogram_logits")}


@pytest.mark.parametrize("lean", [False, True], ids=["transformers_blocks", "lean_blocks"])
def test_install_kernels_keeps_the_fold(tiny_folding_model, lean):
    from foldatlas.models.trunk import configure_trunk

    model = tiny_folding_model
    configure_trunk(model, lean=lean)
    model.trunk.chunk_size = None if lean else 8
    try:
        before = _fold(model)
        kernel_calls(reset=True)
        assert install_kernels(model) == "pytorch"
        after = _fold(model)
        calls = kernel_calls(reset=True)
    finally:
        uninstall_kernels(model)
        configure_trunk(model, lean=False)
        model.trunk.chunk_size = None
    recycles = model.trunk.config.max_recycles  # infer() runs max_recycles passes
    blocks = len(model.trunk.blocks)
    assert calls["attention_pytorch"] == 2 * blocks * recycles and calls["attention_kernel"] == 0
    # the lean blocks compute the multiplicative updates themselves
    assert calls["multiplicative_pytorch"] == (0 if lean else 2 * blocks * recycles)
    assert calls["multiplicative_kernel"] == 0
    for key in before:
        assert torch.isfinite(before[key]).all()
        assert _max_diff(after[key], before[key]) < 1e-4, key
    # the comparison is not trivial: the trunk's pair updates move the outputs
    assert float(before["positions"].std()) > 0.1


def test_install_kernels_rejects_forcing_without_kernels(tiny_folding_model):
    with pytest.raises(RuntimeError):
        install_kernels(tiny_folding_model, use_kernel=True)
    assert uninstall_kernels(tiny_folding_model) == 0
    assert install_kernels(tiny_folding_model, use_kernel=False) == "pytorch"
    block = tiny_folding_model.trunk.blocks[0]
    assert "forward" in vars(block.tri_att_start) and "forward" in vars(block.tri_mul_in)
    assert uninstall_kernels(tiny_folding_model) == 4 * len(tiny_folding_model.trunk.blocks)
    assert "forward" not in vars(block.tri_att_start)


def test_compare_kernels_on_cpu():
    result = kernels.compare_kernels(length=12, device="cpu", pair_dim=32, heads=4, head_dim=8, repeats=1)
    assert result["kernels_available"] is False
    for name in ("tri_att_start", "tri_att_end", "tri_mul_out", "tri_mul_in"):
        entry = result[name]
        assert entry["kernel_s"] is None and entry["kernel_max_abs_diff"] is None and entry["kernel_used"] is None
        assert entry["reference_max_abs_diff"] < ATOL * max(1.0, entry["max_abs_output"])
        assert entry["transformers_s"] > 0 and entry["reference_s"] > 0
