"""Random-weight ESMFold checkpoints for tests and benchmarks.

These are fixtures, never defaults: a random model folds nothing. They exist so
that tests exercise exactly the code path of real checkpoints (a folder with
``config.json`` and safetensors weights, loaded through
``transformers.EsmForProteinFolding``) without any download, and so that the
benchmark can measure the cost of the full-size ESMFold v1 architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

# ESM-2 vocabulary, in the order of the facebook/esm2_* and esmfold_v1 tokenizers.
ESM2_VOCAB: tuple[str, ...] = (
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N",
    "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-",
    "<null_1>", "<mask>",
)  # fmt: skip

Size = Literal["tiny", "mid", "full"]


def esmfold_config_dict(size: Size = "tiny") -> dict:
    """Return the ``config.json`` content of an ESMFold model of the given size.

    Parameters
    ----------
    size : {"tiny", "mid", "full"}
        ``"tiny"``: 2 ESM layers of width 32 and 2 trunk blocks (the sizes used
        by transformers' own tests). ``"full"``: the ESMFold v1 architecture
        (ESM-2 3B, 36 layers of width 2560; 48 trunk blocks; 3.5 B parameters).
        ``"mid"``: ESM-2 650M's shape (33 layers of width 1280) and 8 trunk blocks
        of the full widths, for CPU precision benchmarks.

    Returns
    -------
    dict
        Keyword arguments for ``transformers.EsmConfig``.
    """
    if size in ("full", "mid"):
        lm = (dict(hidden_size=2560, num_hidden_layers=36, num_attention_heads=40, intermediate_size=10240)
              if size == "full" else
              dict(hidden_size=1280, num_hidden_layers=33, num_attention_heads=20, intermediate_size=5120))
        trunk = dict(num_blocks=48 if size == "full" else 8, sequence_state_dim=1024, pairwise_state_dim=128,
                     sequence_head_width=32, pairwise_head_width=32, chunk_size=None)
        sm = dict(sequence_dim=384, pairwise_dim=128, ipa_dim=16, resnet_dim=128, num_heads_ipa=12)
        fp16_esm = True
    elif size == "tiny":
        lm = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
        trunk = dict(num_blocks=2, sequence_state_dim=64, pairwise_state_dim=32,
                     sequence_head_width=16, pairwise_head_width=16, chunk_size=None)
        sm = dict(sequence_dim=32, pairwise_dim=32, ipa_dim=8, resnet_dim=16, num_heads_ipa=2,
                  num_blocks=2)
        fp16_esm = False
    else:
        raise ValueError(f"unknown size {size!r}: expected 'tiny', 'mid' or 'full'")
    trunk["structure_module"] = sm
    return dict(
        architectures=["EsmForProteinFolding"],
        model_type="esm",
        vocab_size=len(ESM2_VOCAB),
        vocab_list=list(ESM2_VOCAB),
        pad_token_id=1,
        mask_token_id=32,
        position_embedding_type="rotary",
        max_position_embeddings=1026,
        emb_layer_norm_before=False,
        token_dropout=True,
        layer_norm_eps=1e-5,
        is_folding_model=True,
        esmfold_config=dict(fp16_esm=fp16_esm, lddt_head_hid_dim=16 if size == "tiny" else 128,
                            embed_aa=True, trunk=trunk),
        **lm,
    )


def write_random_esmfold(folder: str | Path, size: Size = "tiny", seed: int = 0, device: str = "cpu") -> Path:
    """Write a random-weight ESMFold checkpoint (``config.json`` + safetensors).

    Parameters
    ----------
    folder : str or Path
        Destination folder; created if missing.
    size : {"tiny", "mid", "full"}
        See :func:`esmfold_config_dict`. The full size needs about 14 GB of
        memory while it is built and 8.4 GB on disk (the language model is
        stored in float16, as in the released ESMFold v1 checkpoint).
    seed : int
        Seed for the random initialisation.
    device : str
        Where the weights are drawn (``cuda``: seconds instead of minutes for the full size; the values differ
        from the CPU's for the same seed).

    Returns
    -------
    Path
        The checkpoint folder.
    """
    import torch
    from transformers import EsmConfig, EsmForProteinFolding, EsmTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = EsmConfig(**esmfold_config_dict(size))
    with torch.device(device):
        model = EsmForProteinFolding(config)
    model.eval()
    # AlphaFold-style initialisation zeroes the last layer of many blocks and
    # heads, which leaves pLDDT and PAE constant; filling those matrices makes
    # the parity tests sensitive to every value, not just constants.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 2 and not torch.any(param):
                param.normal_(0.0, 0.02)
        for head in (model.lddt_head, model.ptm_head):
            for module in head.modules():
                if isinstance(module, torch.nn.Linear):
                    module.weight.normal_(0.0, 2.0 / module.in_features**0.5)
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="2GB")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(ESM2_VOCAB) + "\n")
    EsmTokenizer(vocab_file=str(vocab)).save_pretrained(folder)
    return folder


# The vocabulary every ESM C checkpoint shares (64 slots: the ESM-2 tokens in the same order, then unused ones).
ESMC_VOCAB_SIZE = 64


def esmc_config_dict(size: Size = "tiny") -> dict:
    """``config.json`` content of an ESM C language model (``transformers.EsmcConfig``).

    ``"tiny"``: 2 layers of width 32 (test fixtures). ``"full"``: ESM C 6B (80 layers of width 2560),
    the language model inside ESMFold2.
    """
    if size == "full":
        shape = dict(hidden_size=2560, intermediate_size=6912, num_hidden_layers=80, num_attention_heads=40)
    elif size == "tiny":
        shape = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    else:
        raise ValueError(f"unknown size {size!r}: expected 'tiny' or 'full'")
    return dict(model_type="esmc", vocab_size=ESMC_VOCAB_SIZE, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                mask_token_id=32, **shape)


def _fill_zero_parameters(model, std: float = 0.02) -> None:
    # Zero-initialised gates and heads would leave outputs constant; random values make the
    # parity tests sensitive to every value.
    import torch

    with torch.no_grad():
        for param in model.parameters():
            if param.ndim >= 2 and param.is_floating_point() and not torch.any(param):
                param.normal_(0.0, std)


def write_random_esmc(folder: str | Path, size: Size = "tiny", seed: int = 0) -> Path:
    """Write a random-weight ESM C masked language model (``EsmcForMaskedLM``: config + safetensors)."""
    import torch
    from transformers import EsmcConfig, EsmcForMaskedLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = EsmcConfig(**{k: v for k, v in esmc_config_dict(size).items() if k != "model_type"})
    config.architectures = ["EsmcForMaskedLM"]
    model = EsmcForMaskedLM(config).eval()
    _fill_zero_parameters(model)
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="2GB")
    return folder


def esmfold2_config_dict(size: Size = "tiny", num_samples: int | None = None) -> dict:
    """``config.json`` content of an ESMFold2 model (``transformers.EsmFold2Config``).

    ``"tiny"``: every part present at a width of 32-64 and one or two layers (test fixtures).
    ``"full"``: the ESMFold2-Fast architecture: ESM C 6B, 24 folding-trunk blocks, no MSA encoder, a
    14-entry noise schedule (10 denoising steps after its cap, the released checkpoints' values as
    transformers documents them) and transformers' defaults for every other part.
    """
    if size == "full":
        cfg: dict = dict(folding_trunk_num_hidden_layers=24, msa_encoder=dict(enabled=False),
                         structure_head=dict(inference_num_steps=14))
    elif size == "tiny":
        atom = dict(hidden_size=32, output_dim=48, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=64, num_spatial_rope_pairs_per_axis=1, num_uid_rope_pairs=4)
        cfg = dict(
            hidden_size=48, pairwise_hidden_size=32, single_inputs_size=48 + 67,
            pair_transition_intermediate_size=64, num_loops=2, folding_trunk_num_hidden_layers=2,
            parcae_num_coda_layers=1, atom_encoder=atom,
            structure_head=dict(num_diffusion_samples=3, inference_num_steps=6, diffusion_module=dict(
                hidden_size=64, fourier_dim=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                pair_intermediate_size=64, atom_encoder=dict(atom, output_dim=64))),
            confidence_head=dict(num_hidden_layers=1), msa_encoder=dict(enabled=False),
            lm_encoder=dict(num_hidden_layers=1))
    else:
        raise ValueError(f"unknown size {size!r}: expected 'tiny' or 'full'")
    if num_samples is not None:
        cfg.setdefault("structure_head", {})["num_diffusion_samples"] = int(num_samples)
    cfg["esmc_config"] = esmc_config_dict(size)
    return cfg


def write_random_esmfold2(folder: str | Path, size: Size = "tiny", seed: int = 0, lm_dtype=None,
                          num_samples: int | None = None) -> Path:
    """Write a random-weight ESMFold2 checkpoint (config + safetensors), ESM C bundled as ``esmc.*``.

    Parameters
    ----------
    folder : str or Path
    size : {"tiny", "full"}
        See :func:`esmfold2_config_dict`. The full size holds 6.6 B parameters: built one part at a
        time in ``lm_dtype``, about 13 GB on disk in bfloat16.
    seed : int
    lm_dtype : torch.dtype, optional
        Storage dtype of the whole checkpoint (the released ones are bfloat16); default float32 for
        the tiny size, bfloat16 for the full one. transformers keeps its fp32-only modules in float32.
    num_samples : int, optional
        The checkpoint's default number of diffusion samples.

    Returns
    -------
    Path
    """
    import torch
    from transformers import EsmFold2Config, EsmFold2Model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = EsmFold2Config(**esmfold2_config_dict(size, num_samples))
    config.architectures = ["EsmFold2Model"]
    dtype = lm_dtype or (torch.bfloat16 if size == "full" else torch.float32)
    previous = torch.get_default_dtype()
    if dtype != torch.float32:
        torch.set_default_dtype(dtype)  # built directly in 16 bits: no float32 copy of 6 B parameters
    try:
        model = EsmFold2Model(config).eval()
    finally:
        torch.set_default_dtype(previous)
    _fill_zero_parameters(model)
    with torch.no_grad():  # confidence logits wide enough that pTM and PAE differ between samples
        head = model.confidence_head
        for linear in (head.pae_head, head.pde_head):
            linear.weight.normal_(0.0, 2.0 / linear.in_features**0.5)
        for weight in (head.plddt_weight, head.resolved_weight):
            weight.normal_(0.0, 2.0 / weight.shape[1]**0.5)
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="2GB")
    return folder
