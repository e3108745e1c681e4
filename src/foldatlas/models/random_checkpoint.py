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

Size = Literal["tiny", "full"]


def esmfold_config_dict(size: Size = "tiny") -> dict:
    """Return the ``config.json`` content of an ESMFold model of the given size.

    Parameters
    ----------
    size : {"tiny", "full"}
        ``"tiny"``: 2 ESM layers of width 32 and 2 trunk blocks (the sizes used
        by transformers' own tests). ``"full"``: the ESMFold v1 architecture
        (ESM-2 3B, 36 layers of width 2560; 48 trunk blocks; 3.5 B parameters).

    Returns
    -------
    dict
        Keyword arguments for ``transformers.EsmConfig``.
    """
    if size == "full":
        lm = dict(hidden_size=2560, num_hidden_layers=36, num_attention_heads=40, intermediate_size=10240)
        trunk = dict(num_blocks=48, sequence_state_dim=1024, pairwise_state_dim=128,
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
        raise ValueError(f"unknown size {size!r}: expected 'tiny' or 'full'")
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
        esmfold_config=dict(fp16_esm=fp16_esm, lddt_head_hid_dim=128 if size == "full" else 16,
                            embed_aa=True, trunk=trunk),
        **lm,
    )


def write_random_esmfold(folder: str | Path, size: Size = "tiny", seed: int = 0) -> Path:
    """Write a random-weight ESMFold checkpoint (``config.json`` + safetensors).

    Parameters
    ----------
    folder : str or Path
        Destination folder; created if missing.
    size : {"tiny", "full"}
        See :func:`esmfold_config_dict`. The full size needs about 14 GB of
        memory while it is built and 8.4 GB on disk (the language model is
        stored in float16, as in the released ESMFold v1 checkpoint).
    seed : int
        Seed for the random initialisation.

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
