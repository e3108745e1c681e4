"""Loading ESM-2-architecture language models through ``transformers.EsmForMaskedLM``.

The embedded model (``foldatlas-lm-small``), any ``facebook/esm2_t*``
checkpoint in the local hub cache or a folder, and the tests' random fixtures
all load through :func:`load_language_model`.
"""

from __future__ import annotations

import json

__all__ = ["load_language_model"]


def load_language_model(name: str, attn_implementation: str = "eager"):
    """Load an ESM-2-architecture masked LM by name, hub id (local cache) or folder.

    The embedded model, any ``facebook/esm2_t*`` checkpoint and the test
    fixtures go through this one function.

    Returns
    -------
    (transformers.EsmForMaskedLM, ResolvedModel)
    """
    import torch
    from transformers import EsmForMaskedLM
    from transformers.utils import logging as hf_logging

    from foldatlas.errors import WeightsIntegrityError
    from foldatlas.models.registry import resolve_model

    resolved = resolve_model(name)
    config = json.loads((resolved.path / "config.json").read_text())
    if config.get("is_folding_model") or "EsmForProteinFolding" in config.get("architectures", []):
        raise WeightsIntegrityError(f"model '{name}' is a folding model, not a language model")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        # Computed in float32 whatever the stored dtype (16-bit matmuls crawl on CPUs).
        model = EsmForMaskedLM.from_pretrained(str(resolved.path), attn_implementation=attn_implementation,
                                               use_safetensors=True, dtype=torch.float32)
    except (OSError, ValueError, RuntimeError) as e:
        raise WeightsIntegrityError(f"model '{name}': cannot load {resolved.path}: {str(e).splitlines()[0]}") from e
    finally:
        hf_logging.set_verbosity(verbosity)
    model.eval()
    return model, resolved
