"""Optional fused GPU kernels (NVIDIA cuEquivariance) for ESMFold's triangle updates, with a PyTorch fallback.

Every block of ESMFold v1's folding trunk (transformers' ``EsmFoldTriangularSelfAttentionBlock``) runs two
triangle multiplicative updates (``tri_mul_out``, ``tri_mul_in``) and two triangle attentions (``tri_att_start``,
``tri_att_end``) over the pair representation ``z`` [B, L, L, 128]. ``cuequivariance_torch`` (0.13) has fused
CUDA/Triton kernels for both:

* ``triangle_attention(q, k, v, bias, mask=None, scale=None, return_aux=False, *, kv_lengths=None)`` with
  q/k/v [B, N, H, S, D], ``bias`` [B, 1, H, S, S] (consumed in float32 by the generic kernel), ``mask``
  [B, N, 1, 1, S] (bool, True = valid; a masked key's logit becomes -1e9) and ``scale`` the factor on q
  (default 1/sqrt(D)). Kernel limits: float32 needs D <= 32 and D % 4 == 0; bfloat16/float16 need D <= 128
  and D % 8 == 0. The library runs its own PyTorch formula when S <= ``CUEQ_TRIATTN_FALLBACK_THRESHOLD``
  (100), or S <= 200 when D < 32.
* ``triangle_multiplicative_update(x, direction="outgoing", mask=None, norm_in_weight, norm_in_bias,
  p_in_weight, p_in_bias, g_in_weight, g_in_bias, norm_out_weight, norm_out_bias, p_out_weight, p_out_bias,
  g_out_weight, g_out_bias, eps=1e-5, precision=None)``: x [B, N, N, C], mask [B, N, N]; ``p_in_*`` and
  ``g_in_*`` are [2D, C] with the rows of projection ``a`` first, then those of ``b``; all four projection
  biases are optional. Widths must be multiples of 32; the library runs its PyTorch formula when
  N <= ``CUEQ_TRIMUL_FALLBACK_THRESHOLD`` (100).

This module maps a transformers module's weights and inputs to those argument layouts and calls either the
kernel or :func:`triangle_attention_reference` / :func:`triangle_multiplicative_update_reference`, plain-PyTorch
implementations of the same contracts. The mapping is therefore the same code on both paths, and the tests check
it on the CPU against transformers' modules. :func:`install_kernels` puts the wrappers into a model's trunk;
:func:`kernel_calls` counts which path ran; :func:`compare_kernels` measures kernel against reference against
transformers on a GPU.

Masks are read as binary (valid where nonzero), as ESMFold's are. A pair row whose keys are all masked (a
padding row) gets -1e9 for every logit from the kernel, where transformers adds -1e9 to the logit: such rows
differ between the two, and no valid position depends on them.

:func:`foldatlas.models.trunk.lean_block_forward` (the memory-lean trunk) calls the multiplicative modules
through these wrappers when the kernels are installed, and computes them itself otherwise.
"""

from __future__ import annotations

import functools
import math
import os
import time
import types

__all__ = [
    "triangle_attention_reference",
    "triangle_multiplicative_update_reference",
    "triangle_attention_forward",
    "triangle_multiplicative_forward",
    "attention_kernel_supported",
    "multiplicative_kernel_supported",
    "kernels_available",
    "install_kernels",
    "uninstall_kernels",
    "kernel_calls",
    "kernel_failures",
    "compare_kernels",
]

_ATTENTION = "attention"
_MULTIPLICATIVE = "multiplicative"
_ATTENTION_MODULES = ("tri_att_start", "tri_att_end")
_MULTIPLICATIVE_MODULES = ("tri_mul_out", "tri_mul_in")
_CALLS = {f"{op}_{path}": 0 for op in (_ATTENTION, _MULTIPLICATIVE) for path in ("kernel", "pytorch")}


# --------------------------------------------------------------------------------------------------------------
# Reference implementations of the kernels' contracts
# --------------------------------------------------------------------------------------------------------------

def triangle_attention_reference(q, k, v, bias, mask=None, scale: float | None = None):
    """``cuequivariance_torch.triangle_attention`` in plain PyTorch.

    Parameters
    ----------
    q : Tensor, shape [B, N, H, Q, D]
        Queries (for B = 1 also [N, H, Q, D]).
    k, v : Tensor, shape [B, N, H, K, D]
        Keys and values.
    bias : Tensor, shape [B, 1, H, Q, K]
        Added to the logits (the triangle bias, shared by the N rows).
    mask : Tensor, shape [B, N, 1, 1, K], optional
        True (nonzero) where the key is valid; a masked key's logit gets ``-1e9`` added (``-6e4`` in float16).
    scale : float, optional
        Factor on the queries; ``1/sqrt(D)`` when None.

    Returns
    -------
    Tensor, shape [B, N, H, Q, D]
        ``softmax(scale * q k^T + bias + mask) v``, in the dtype of the logits (autocast's under autocast).
    """
    import torch

    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    logits = torch.matmul(q * scale, k.transpose(-1, -2))
    if mask is not None:
        big = 6e4 if q.dtype == torch.float16 else 1e9
        logits = logits - big * (mask == 0).to(logits.dtype)
    logits = logits + bias.to(logits.dtype)
    return torch.matmul(torch.softmax(logits, dim=-1), v)


def triangle_multiplicative_update_reference(
    x,
    direction: str = "outgoing",
    mask=None,
    norm_in_weight=None,
    norm_in_bias=None,
    p_in_weight=None,
    p_in_bias=None,
    g_in_weight=None,
    g_in_bias=None,
    norm_out_weight=None,
    norm_out_bias=None,
    p_out_weight=None,
    p_out_bias=None,
    g_out_weight=None,
    g_out_bias=None,
    eps: float = 1e-5,
    precision=None,
    *,
    eps_out: float | None = None,
):
    """``cuequivariance_torch.triangle_multiplicative_update`` in plain PyTorch (AlphaFold 2, Algorithms 11/12).

    Parameters
    ----------
    x : Tensor, shape [..., N, N, C]
        The pair representation.
    direction : {"outgoing", "incoming"}
        ``p_ij = sum_k a_ik b_jk`` (outgoing edges) or ``p_ij = sum_k a_ki b_kj`` (incoming).
    mask : Tensor, shape [..., N, N], optional
        Multiplies the gated projections ``a`` and ``b``.
    norm_in_weight, norm_in_bias : Tensor, shape [C], optional
        Input LayerNorm (no affine part when None).
    p_in_weight, g_in_weight : Tensor, shape [2D, C]
        Projections and gates of ``a`` (rows ``:D``) and ``b`` (rows ``D:``). Required here (the library draws
        random weights when they are missing).
    p_in_bias, g_in_bias : Tensor, shape [2D], optional
    norm_out_weight, norm_out_bias : Tensor, shape [D], optional
        LayerNorm of the triangle product.
    p_out_weight : Tensor, shape [C, D]
        Output projection.
    g_out_weight : Tensor, shape [C, C]
        Output gate, applied to the normalised input.
    p_out_bias, g_out_bias : Tensor, shape [C], optional
    eps : float
        LayerNorm epsilon.
    precision : None or str, optional
        ``"bfloat16"`` rounds the input, mask, weights and biases to bfloat16 first, as the library does; other
        values (``"ieee"``, ``"default"``, a ``TriMulPrecision``) change nothing here.
    eps_out : float, optional
        Epsilon of the output LayerNorm when it differs from ``eps`` (not in the library's API).

    Returns
    -------
    Tensor, shape [..., N, N, C]
        ``linear(LN_out(p), p_out) * sigmoid(linear(LN_in(x), g_out))``. Under float16 autocast the triangle
        product is taken in float32, as ESMFold does.
    """
    import torch
    import torch.nn.functional as F

    if direction not in ("outgoing", "incoming"):
        raise ValueError(f"direction must be 'outgoing' or 'incoming', got {direction!r}")
    missing = [name for name, value in (("p_in_weight", p_in_weight), ("g_in_weight", g_in_weight),
                                        ("p_out_weight", p_out_weight), ("g_out_weight", g_out_weight))
               if value is None]
    if missing:
        raise ValueError(f"the reference needs the projection weights; missing: {', '.join(missing)}")
    if isinstance(precision, str) and precision.lower() in ("bf16", "bfloat16"):
        def bf16(t):
            return None if t is None else t.to(torch.bfloat16)
        x, mask = bf16(x), bf16(mask)
        (norm_in_weight, norm_in_bias, p_in_weight, p_in_bias, g_in_weight, g_in_bias, norm_out_weight,
         norm_out_bias, p_out_weight, p_out_bias, g_out_weight, g_out_bias) = map(bf16, (
            norm_in_weight, norm_in_bias, p_in_weight, p_in_bias, g_in_weight, g_in_bias, norm_out_weight,
            norm_out_bias, p_out_weight, p_out_bias, g_out_weight, g_out_bias))

    def halves(t):
        return (None, None) if t is None else t.chunk(2, dim=0)

    (pa_w, pb_w), (pa_b, pb_b) = halves(p_in_weight), halves(p_in_bias)
    (ga_w, gb_w), (ga_b, gb_b) = halves(g_in_weight), halves(g_in_bias)

    x_in = F.layer_norm(x, x.shape[-1:], norm_in_weight, norm_in_bias, eps)
    a = torch.sigmoid(F.linear(x_in, ga_w, ga_b)) * F.linear(x_in, pa_w, pa_b)
    b = torch.sigmoid(F.linear(x_in, gb_w, gb_b)) * F.linear(x_in, pb_w, pb_b)
    if mask is not None:
        m = mask.unsqueeze(-1)
        a = a * m.to(a.dtype)
        b = b * m.to(b.dtype)

    def contract(a, b):
        # [..., i, k, d] -> [..., d, i, k] (outgoing) or [..., d, k, i] -> [..., d, i, k] (incoming)
        nd = a.dim()
        lead = list(range(nd - 3))
        if direction == "outgoing":
            left = a.permute(lead + [nd - 1, nd - 3, nd - 2])  # a[d, i, k]
            right = b.permute(lead + [nd - 1, nd - 2, nd - 3])  # b[d, k, j] = b_jk
        else:
            left = a.permute(lead + [nd - 1, nd - 2, nd - 3])  # a[d, i, k] = a_ki
            right = b.permute(lead + [nd - 1, nd - 3, nd - 2])  # b[d, k, j] = b_kj
        return torch.matmul(left, right).permute(lead + [nd - 2, nd - 1, nd - 3])

    device_type = a.device.type
    if torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.float16:
        with torch.autocast(device_type, enabled=False):
            p = contract(a.float(), b.float())
    else:
        p = contract(a, b)
    del a, b
    p = F.layer_norm(p, p.shape[-1:], norm_out_weight, norm_out_bias, eps if eps_out is None else eps_out)
    return F.linear(p, p_out_weight, p_out_bias) * torch.sigmoid(F.linear(x_in, g_out_weight, g_out_bias))


# --------------------------------------------------------------------------------------------------------------
# Availability and per-call support
# --------------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _library() -> dict:
    """The two kernel entry points, each None where it cannot be imported (cached)."""
    found = {_ATTENTION: None, _MULTIPLICATIVE: None}
    try:
        import cuequivariance_ops_torch as ops  # the compiled kernels (needs a CUDA build of torch)
    except Exception:
        return found
    try:  # the public API; its functions forward to the ops package with the same arguments
        import cuequivariance_torch as api

        attention, multiplicative = api.triangle_attention, api.triangle_multiplicative_update
    except Exception:  # cuequivariance_torch's own imports (sympy, opt_einsum...) failed: call the ops directly
        attention = getattr(ops, "triangle_attention", None)
        multiplicative = getattr(ops, "triangle_multiplicative_update", None)
    found[_ATTENTION] = attention
    if not hasattr(ops, "IMPORT_EXCEPTION"):  # set by the ops package when its Triton kernels failed to import
        found[_MULTIPLICATIVE] = multiplicative
    return found


def _cuda_capable(device) -> bool:
    import torch

    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    try:
        return torch.cuda.get_device_capability(device)[0] >= 8  # the generic kernels are built for sm_80+
    except Exception:
        return False


_FAILED: dict[str, str] = {}  # op -> why its kernel failed in this process (PyTorch runs it from then on)


def _kernel(op: str, device):
    """The kernel function for ``op`` on ``device``, or None."""
    if op in _FAILED or not _cuda_capable(device):
        return None
    return _library()[op]


def _kernel_failed(op: str, error: Exception) -> None:
    """Give up ``op``'s kernel for this process after it raised (a kernel that does not compile or launch on
    this GPU): warn once; the caller runs the PyTorch reference. Out-of-memory errors are not kernel failures."""
    import warnings

    import torch

    if isinstance(error, torch.cuda.OutOfMemoryError):
        raise error
    _FAILED[op] = f"{error.__class__.__name__}: {error}"[:300]
    warnings.warn(f"cuEquivariance's triangle {op} kernel failed ({_FAILED[op]}); PyTorch runs it from now on",
                  RuntimeWarning, stacklevel=3)


def kernel_failures() -> dict[str, str]:
    """The kernels given up in this process, with the error each raised."""
    return dict(_FAILED)


def kernels_available(device) -> bool:
    """Whether cuEquivariance's triangle kernels can run on ``device``.

    Parameters
    ----------
    device : torch.device or str

    Returns
    -------
    bool
        True for a CUDA device of compute capability 8.0 or newer when ``cuequivariance_ops_torch`` (and its
        Triton kernels) import; False on CPUs and where the packages are missing.
    """
    return _kernel(_ATTENTION, device) is not None and _kernel(_MULTIPLICATIVE, device) is not None


def _threshold(name: str) -> int:
    try:
        return int(os.environ.get(name, "100"))
    except ValueError:
        return 100


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def attention_kernel_supported(length: int, head_dim: int, dtype) -> bool:
    """Whether cuEquivariance's triangle attention kernel (not its PyTorch fallback) takes a call.

    Parameters
    ----------
    length : int
        The query/key length S (the pair length L).
    head_dim : int
        D, the width of one head.
    dtype : torch.dtype
        The dtype of q/k/v as the kernel sees them (autocast's under CUDA autocast).

    Returns
    -------
    bool
        float32: ``D <= 32`` and ``D % 4 == 0``; bfloat16/float16: ``D <= 128`` and ``D % 8 == 0``; and
        ``S > CUEQ_TRIATTN_FALLBACK_THRESHOLD`` (default 100), ``S > 200`` when ``D < 32``: below that the
        library runs its own PyTorch formula.
    """
    name = _dtype_name(dtype)
    if name == "float32":
        if head_dim > 32 or head_dim % 4:
            return False
    elif name in ("bfloat16", "float16"):
        if head_dim > 128 or head_dim % 8:
            return False
    else:
        return False
    threshold = _threshold("CUEQ_TRIATTN_FALLBACK_THRESHOLD")
    if head_dim < 32:
        threshold = max(threshold, 200)
    return length > threshold


def multiplicative_kernel_supported(length: int, pair_dim: int, hidden_dim: int, dtype) -> bool:
    """Whether cuEquivariance's triangle multiplicative update kernels (not its PyTorch fallback) take a call.

    Parameters
    ----------
    length : int
        N, the pair length.
    pair_dim : int
        C, the width of the pair representation.
    hidden_dim : int
        D, the width of the projections ``a`` and ``b``.
    dtype : torch.dtype
        The dtype of the pair tensor.

    Returns
    -------
    bool
        float32, bfloat16 or float16; C and D multiples of 32; ``N > CUEQ_TRIMUL_FALLBACK_THRESHOLD``
        (default 100), below which the library runs its own PyTorch formula.
    """
    if _dtype_name(dtype) not in ("float32", "bfloat16", "float16"):
        return False
    if pair_dim % 32 or hidden_dim % 32:
        return False
    return length > _threshold("CUEQ_TRIMUL_FALLBACK_THRESHOLD")


#: Shortest pair length at which ``use_kernel=None`` takes the kernels (env ``FOLDATLAS_KERNEL_MIN_LENGTH``).
#: Measured on one H200 (BENCHMARKS.md "GPU precision modes"): below about 300 residues a fold is bound by the
#: host launching kernels (at 128 residues 1.3 s of CPU time for 0.18 s of GPU work), and each cuEquivariance
#: call costs 175-220 us of CPU against 15-25 us on the GPU, so the kernels made 128- and 256-residue folds
#: slower (1.97 s vs 1.52 s, 1.66 s vs 1.48 s) and 384-residue folds 1.75x faster (1.49 s vs 2.60 s).
KERNEL_MIN_LENGTH = 320


def kernel_min_length() -> int:
    """The pair length from which the kernels run when not forced (``FOLDATLAS_KERNEL_MIN_LENGTH`` or 320)."""
    try:
        return int(os.environ.get("FOLDATLAS_KERNEL_MIN_LENGTH", KERNEL_MIN_LENGTH))
    except ValueError:
        return KERNEL_MIN_LENGTH


def _choose(op: str, device, supported: bool, use_kernel: bool | None, length: int | None = None):
    """The kernel to call, or None for the reference; counts the call.

    With ``use_kernel`` None, pair lengths below :func:`kernel_min_length` take the reference (faster there).
    """
    fn = None
    if use_kernel or use_kernel is None:
        fn = _kernel(op, device)
        if fn is None and use_kernel:
            raise RuntimeError(f"use_kernel=True but cuEquivariance's triangle kernels are not available on {device}")
        if not supported or (use_kernel is None and length is not None and length < kernel_min_length()):
            fn = None
    _CALLS[f"{op}_{'kernel' if fn is not None else 'pytorch'}"] += 1
    return fn


def kernel_calls(reset: bool = False) -> dict[str, int]:
    """How many wrapper calls ran each path since the last reset.

    Parameters
    ----------
    reset : bool
        Set the counters back to zero after reading them.

    Returns
    -------
    dict
        ``attention_kernel``, ``attention_pytorch``, ``multiplicative_kernel``, ``multiplicative_pytorch``: one
        count per module call (a chunked attention counts once).
    """
    counts = dict(_CALLS)
    if reset:
        for key in _CALLS:
            _CALLS[key] = 0
    return counts


# --------------------------------------------------------------------------------------------------------------
# Wrappers around transformers' modules
# --------------------------------------------------------------------------------------------------------------

def triangle_attention_forward(module, x, mask=None, chunk_size: int | None = None, use_kernel: bool | None = None):
    """What ``EsmFoldTriangleAttention.forward(x, mask, chunk_size)`` returns, through the kernel or the reference.

    Parameters
    ----------
    module : transformers' EsmFoldTriangleAttention
        Its ``starting`` flag, ``layer_norm``, ``linear`` (the triangle bias) and ``mha`` (``linear_q/k/v/g/o``,
        ``no_heads``, ``c_hidden`` per head) are used.
    x : Tensor, shape [..., I, J, C]
        The pair representation.
    mask : Tensor, shape [..., I, J], optional
        Pair mask (valid where nonzero); all valid when None.
    chunk_size : int, optional
        Rows of the attention computed at a time (rows I for the starting node, columns J for the ending node),
        of every batch element together (transformers counts the rows of all batch elements: the same for
        B = 1); one pass when None. Each chunk is one kernel call.
    use_kernel : bool, optional
        True: the kernel where the call is supported (:func:`attention_kernel_supported`), the reference
        otherwise, RuntimeError when the kernel is not installed; False: always the reference; None (default):
        the kernel where installed and supported.

    Returns
    -------
    Tensor, shape [..., I, J, C]
        The attention update (not yet added to ``x``).
    """
    if not module.starting:  # the ending node: attend along the columns
        x = x.transpose(-2, -3)
        mask = None if mask is None else mask.transpose(-1, -2)
    lead = x.shape[:-3]
    rows, length, width = x.shape[-3:]
    x = x.reshape((-1, rows, length, width))
    batch = x.shape[0]

    x = module.layer_norm(x)
    # [B, I, 1, 1, J]; None (transformers' all-ones mask adds zeros) lets the kernel skip masking
    valid = None if mask is None else (mask.reshape((-1, rows, length)) != 0)[:, :, None, None, :]
    bias = module.linear(x).permute(0, 3, 1, 2).unsqueeze(1)  # [B, 1, H, I(q), J(k)]
    mha = module.mha
    heads, head_dim = mha.no_heads, mha.c_hidden
    scale = 1.0 / math.sqrt(head_dim)

    def heads_first(t):  # [B, r, J, H*D] -> [B, r, H, J, D]
        return t.view(t.shape[:-1] + (heads, head_dim)).transpose(-2, -3)

    step = rows if chunk_size is None else max(1, int(chunk_size))
    out = None
    attend = None
    for start in range(0, rows, step):
        part = slice(start, min(start + step, rows))
        xr = x[:, part]
        q = heads_first(mha.linear_q(xr))
        k = heads_first(mha.linear_k(xr))
        v = heads_first(mha.linear_v(xr))
        if attend is None:  # decided once per call, on the dtype the kernel would see
            fn = _choose(_ATTENTION, x.device, attention_kernel_supported(length, head_dim, q.dtype), use_kernel,
                         length)
            attend = fn if fn is not None else triangle_attention_reference
            # the generic kernel consumes the bias in float32 (and warns on every call given another dtype)
            kernel_bias = bias.float() if fn is not None else bias
        part_mask = None if valid is None else valid[:, part].contiguous()
        try:
            o = attend(q, k, v, kernel_bias if attend is not triangle_attention_reference else bias,
                       mask=part_mask, scale=scale)  # [B, r, H, J, D]
        except Exception as e:
            if attend is triangle_attention_reference:
                raise
            _kernel_failed(_ATTENTION, e)
            attend = triangle_attention_reference
            o = attend(q, k, v, bias, mask=part_mask, scale=scale)
        o = o.transpose(-2, -3)  # [B, r, J, H, D]
        if mha.linear_g is not None:
            g = mha.sigmoid(mha.linear_g(xr))
            o = o * g.view(g.shape[:-1] + (heads, head_dim))
        o = mha.linear_o(o.reshape(o.shape[:-2] + (heads * head_dim,)))
        if out is None:
            if step >= rows:
                out = o
                break
            out = o.new_empty((batch, rows) + o.shape[2:])
        out[:, part] = o
    if attend is None:  # no rows
        out = x.new_zeros(x.shape[:-1] + (mha.linear_o.out_features,))
    out = out.reshape(lead + out.shape[1:])
    if not module.starting:
        out = out.transpose(-2, -3)
    return out


def _multiplicative_arguments(module) -> dict:
    """The keyword arguments of ``triangle_multiplicative_update`` for an EsmFoldTriangleMultiplicativeUpdate."""
    import torch

    def stacked(first, second, attr):
        one, two = getattr(first, attr), getattr(second, attr)
        if one is None and two is None:
            return None
        if one is None:
            one = torch.zeros_like(two)
        if two is None:
            two = torch.zeros_like(one)
        return torch.cat([one, two])

    m = module
    return dict(
        direction="outgoing" if m._outgoing else "incoming",
        norm_in_weight=m.layer_norm_in.weight,
        norm_in_bias=m.layer_norm_in.bias,
        p_in_weight=stacked(m.linear_a_p, m.linear_b_p, "weight"),
        p_in_bias=stacked(m.linear_a_p, m.linear_b_p, "bias"),
        g_in_weight=stacked(m.linear_a_g, m.linear_b_g, "weight"),
        g_in_bias=stacked(m.linear_a_g, m.linear_b_g, "bias"),
        norm_out_weight=m.layer_norm_out.weight,
        norm_out_bias=m.layer_norm_out.bias,
        p_out_weight=m.linear_z.weight,
        p_out_bias=m.linear_z.bias,
        g_out_weight=m.linear_g.weight,
        g_out_bias=m.linear_g.bias,
        eps=m.layer_norm_in.eps,
    )


def triangle_multiplicative_forward(module, z, mask=None, use_kernel: bool | None = None):
    """What ``EsmFoldTriangleMultiplicativeUpdate.forward(z, mask)`` returns, through the kernel or the reference.

    Parameters
    ----------
    module : transformers' EsmFoldTriangleMultiplicativeUpdate
        ``_outgoing``, ``layer_norm_in/out``, ``linear_a_p/a_g/b_p/b_g`` (stacked into the kernel's ``p_in`` and
        ``g_in`` with ``a`` first), ``linear_z`` (``p_out``) and ``linear_g`` (``g_out``), biases included.
    z : Tensor, shape [..., N, N, C]
        The pair representation.
    mask : Tensor, shape [..., N, N], optional
        Pair mask; all valid when None.
    use_kernel : bool, optional
        As :func:`triangle_attention_forward`, with :func:`multiplicative_kernel_supported`.

    Returns
    -------
    Tensor, shape [..., N, N, C]
        The update (not yet added to ``z``).
    """
    kwargs = _multiplicative_arguments(module)
    eps_out = module.layer_norm_out.eps
    c_hidden = kwargs["p_in_weight"].shape[0] // 2
    supported = (z.dim() >= 3 and z.shape[-2] == z.shape[-3] and eps_out == kwargs["eps"]
                 and multiplicative_kernel_supported(z.shape[-2], z.shape[-1], c_hidden, z.dtype))
    fn = _choose(_MULTIPLICATIVE, z.device, supported, use_kernel, z.shape[-2] if z.dim() >= 2 else None)
    if fn is not None:
        shape = z.shape
        x = z.reshape((-1,) + shape[-3:]).contiguous()
        flat_mask = None if mask is None else mask.reshape((-1,) + shape[-3:-1]).to(x.dtype).contiguous()
        try:
            return fn(x, mask=flat_mask, **kwargs).reshape(shape)
        except Exception as e:
            _kernel_failed(_MULTIPLICATIVE, e)
    return triangle_multiplicative_update_reference(z, mask=mask, eps_out=eps_out, **kwargs)


# --------------------------------------------------------------------------------------------------------------
# Installing into a model
# --------------------------------------------------------------------------------------------------------------

def _attention_method(use_kernel: bool | None):
    def forward(self, x, mask=None, chunk_size=None, use_memory_efficient_kernel=False, use_lma=False,
                inplace_safe=False):
        return triangle_attention_forward(self, x, mask=mask, chunk_size=chunk_size, use_kernel=use_kernel)

    return forward


def _multiplicative_method(use_kernel: bool | None):
    def forward(self, z, mask=None, inplace_safe=False, _add_with_inplace=False, _inplace_chunk_size=256):
        update = triangle_multiplicative_forward(self, z, mask=mask, use_kernel=use_kernel)
        if inplace_safe and _add_with_inplace:  # transformers' inference path: z overwritten with z + update
            z += update
            return z
        return update

    return forward


def _trunk_modules(model):
    for block in model.trunk.blocks:
        for name in _ATTENTION_MODULES:
            yield _ATTENTION, getattr(block, name)
        for name in _MULTIPLICATIVE_MODULES:
            yield _MULTIPLICATIVE, getattr(block, name)


def install_kernels(model, use_kernel: bool | None = None) -> str:
    """Route every trunk block's triangle attentions and multiplicative updates through the wrappers.

    The ``forward`` of ``tri_att_start``, ``tri_att_end``, ``tri_mul_out`` and ``tri_mul_in`` of each block of
    ``model.trunk.blocks`` is replaced (on the instance, keeping transformers' call signature) by
    :func:`triangle_attention_forward` / :func:`triangle_multiplicative_forward`. Each call then takes the
    kernel where it is supported and the reference otherwise (:func:`kernel_calls` counts them).

    Parameters
    ----------
    model : transformers.EsmForProteinFolding
    use_kernel : bool, optional
        None (default): the kernels when :func:`kernels_available` on the model's device; True: the kernels,
        RuntimeError when they are not available; False: the PyTorch reference only.

    Returns
    -------
    str
        ``"cuequivariance"`` (both kernels available) or ``"pytorch"``: the path supported calls take.
    """
    device = next(model.parameters()).device
    available = kernels_available(device)
    if use_kernel and not available:
        raise RuntimeError(f"cuEquivariance's triangle kernels are not available on {device}")
    use = available if use_kernel is None else bool(use_kernel)
    path = "cuequivariance" if use else "pytorch"
    # Unless told False, each call takes its own kernel where that one imports and supports the call (the
    # multiplicative kernels also need Triton, scipy, pynvml, platformdirs and tqdm; the attention kernel does not).
    per_call = False if use_kernel is False else None
    for op, module in _trunk_modules(model):
        method = _attention_method(per_call) if op == _ATTENTION else _multiplicative_method(per_call)
        module.forward = types.MethodType(method, module)
        module._foldatlas_kernels = path
    model.trunk._foldatlas_kernels = path
    return path


def uninstall_kernels(model) -> int:
    """Give the trunk's triangle modules back transformers' own ``forward``.

    Returns
    -------
    int
        The number of modules restored.
    """
    count = 0
    for _, module in _trunk_modules(model):
        if "forward" in vars(module):
            del module.forward
            count += 1
        vars(module).pop("_foldatlas_kernels", None)
    vars(model.trunk).pop("_foldatlas_kernels", None)
    return count


# --------------------------------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------------------------------

def _randomise(module, generator) -> None:
    """Weights of realistic scale (transformers zero-initialises the output layers)."""
    import torch

    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
            if p.dim() >= 2:
                p.copy_(noise / math.sqrt(p.shape[-1]))
            elif "layer_norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)


def _time(fn, device, repeats: int) -> tuple[float, object, float | None]:
    """Median seconds of ``fn()`` after one warm-up call, its result, and its peak MiB on CUDA."""
    import torch

    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    out = fn()
    sync()
    del out
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    times = []
    for _ in range(max(1, repeats)):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if cuda else None
    times.sort()
    return times[len(times) // 2], out, peak


def compare_kernels(length: int = 256, device: str = "cuda", seed: int = 0, *, batch: int = 1,
                    pair_dim: int = 128, heads: int = 4, head_dim: int = 32, autocast: str | None = None,
                    chunk_size: int | None = None, repeats: int = 5) -> dict:
    """Kernel against reference against transformers on random ESMFold-width triangle modules.

    Parameters
    ----------
    length : int
        Pair length L.
    device : str
        ``"cuda"`` (kernel, reference and transformers) or ``"cpu"`` (reference and transformers; the kernel
        entries are None).
    seed : int
        Seeds the weights and the input.
    batch, pair_dim, heads, head_dim : int
        Shapes (ESMFold v1: pair dim 128, 4 heads of 32).
    autocast : str, optional
        Run every variant under ``torch.autocast`` in this dtype (``"bfloat16"``).
    chunk_size : int, optional
        The attention's row chunk.
    repeats : int
        Timed calls per variant (median reported).

    Returns
    -------
    dict
        ``device``, ``length``, the shapes, ``kernels_available``, and for each of ``tri_att_start``,
        ``tri_att_end``, ``tri_mul_out``, ``tri_mul_in``: ``transformers_s``, ``reference_s``, ``kernel_s``
        (median seconds), ``reference_max_abs_diff`` and ``kernel_max_abs_diff`` (against transformers, over valid
        pairs; the last 1/8 of the positions of the last sequence are padding), ``kernel_used`` (whether the
        kernel took the call), ``max_abs_output`` and, on CUDA, peak MiB above the inputs
        (``*_peak_mib``). Kernel entries are None where the kernel is not available.
    """
    import contextlib

    import torch
    from transformers.models.esm.modeling_esmfold import (
        EsmFoldTriangleAttention,
        EsmFoldTriangleMultiplicativeUpdate,
    )

    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    modules = {
        "tri_att_start": EsmFoldTriangleAttention(pair_dim, head_dim, heads, starting=True, inf=1e9),
        "tri_att_end": EsmFoldTriangleAttention(pair_dim, head_dim, heads, starting=False, inf=1e9),
        "tri_mul_out": EsmFoldTriangleMultiplicativeUpdate(types.SimpleNamespace(pairwise_state_dim=pair_dim),
                                                           _outgoing=True),
        "tri_mul_in": EsmFoldTriangleMultiplicativeUpdate(types.SimpleNamespace(pairwise_state_dim=pair_dim),
                                                          _outgoing=False),
    }
    for module in modules.values():
        _randomise(module, generator)
        module.to(device).eval()
    z = torch.randn((batch, length, length, pair_dim), generator=generator).to(device)
    seq_mask = torch.ones(batch, length)
    seq_mask[-1, length - length // 8:] = 0
    seq_mask = seq_mask.to(device)
    pair_mask = seq_mask[:, :, None] * seq_mask[:, None, :]
    valid = pair_mask.bool()
    available = kernels_available(device)

    def context():
        if autocast:
            return torch.autocast(device.type, dtype=getattr(torch, autocast))
        return contextlib.nullcontext()

    def diff(a, b):
        return float((a.float() - b.float()).abs()[valid].max())

    result = dict(device=str(torch.cuda.get_device_name(device)) if device.type == "cuda" else "cpu",
                  length=length, batch=batch, pair_dim=pair_dim, heads=heads, head_dim=head_dim,
                  autocast=autocast, chunk_size=chunk_size, kernels_available=available)
    for name, module in modules.items():
        attention = name.startswith("tri_att")

        def run(use_kernel=None, module=module, attention=attention):
            with torch.no_grad(), context():
                if use_kernel == "transformers":
                    if attention:
                        return module(z, mask=pair_mask, chunk_size=chunk_size)
                    return module(z, mask=pair_mask)
                if attention:
                    return triangle_attention_forward(module, z, pair_mask, chunk_size, use_kernel=use_kernel)
                return triangle_multiplicative_forward(module, z, pair_mask, use_kernel=use_kernel)

        entry = {}
        entry["transformers_s"], expected, entry["transformers_peak_mib"] = _time(
            lambda: run("transformers"), device, repeats)
        entry["reference_s"], got, entry["reference_peak_mib"] = _time(lambda: run(False), device, repeats)
        entry["reference_max_abs_diff"] = diff(got, expected)
        del got
        entry["max_abs_output"] = float(expected.float().abs()[valid].max())
        entry.update(kernel_s=None, kernel_max_abs_diff=None, kernel_used=None, kernel_peak_mib=None)
        if available:
            key = f"{_ATTENTION if attention else _MULTIPLICATIVE}_kernel"
            before = _CALLS[key]
            entry["kernel_s"], got, entry["kernel_peak_mib"] = _time(lambda: run(True), device, repeats)
            entry["kernel_used"] = _CALLS[key] > before
            entry["kernel_max_abs_diff"] = diff(got, expected)
            del got
        if device.type != "cuda":
            for key in ("transformers_peak_mib", "reference_peak_mib", "kernel_peak_mib"):
                entry.pop(key)
        result[name] = entry
        del expected
    return result
