"""Loading ESM-2-architecture language models through ``transformers.EsmForMaskedLM``.

The embedded model (``foldatlas-lm-small``), any ``facebook/esm2_t*``
checkpoint in the local hub cache or a folder, and the tests' random fixtures
all load through :func:`load_language_model`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from foldatlas.errors import InvalidOptionError
from foldatlas.models.random_checkpoint import ESM2_VOCAB

__all__ = ["LanguageModel", "load_language_model", "tokenize", "TOKEN_OF", "PAD", "CLS", "EOS", "MASK"]

PAD, CLS, EOS, MASK = 1, 0, 2, 32  # ESM-2 vocabulary ids of the special tokens
TOKEN_OF: dict[str, int] = {tok: i for i, tok in enumerate(ESM2_VOCAB)}


@dataclass
class LanguageModel:
    """A loaded masked language model (the language-model tools and the atlas embedder use it).

    Attributes
    ----------
    model : transformers.EsmForMaskedLM
    name : str
        Registered name, hub id or folder name.
    weights_sha256 : str
    spec : str
        What it was loaded by (a name, hub id or folder path), to load it again.
    """

    model: object
    name: str
    weights_sha256: str
    spec: str = ""

    @property
    def num_layers(self) -> int:
        """Transformer layers (representation layers run 0 = embeddings ... num_layers = final)."""
        return int(self.model.config.num_hidden_layers)

    @property
    def dim(self) -> int:
        """Hidden size."""
        return int(self.model.config.hidden_size)

    def layer_index(self, layer: int) -> int:
        """A representation layer as 0..num_layers (negative counts from the end: -1 is the final layer).

        Raises
        ------
        InvalidOptionError
            If the layer does not exist.
        """
        n = self.num_layers
        if not -(n + 1) <= layer <= n:
            raise InvalidOptionError(f"layer {layer} does not exist: {self.name} has layers 0..{n} (or -1..-{n + 1})")
        return layer % (n + 1)


def tokenize(seqs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """ESM-2 token ids (``<cls> seq <eos>``, padded) and the attention mask.

    Returns
    -------
    ids : ndarray of int64, shape (B, max_len + 2)
    attention_mask : ndarray of int64, shape (B, max_len + 2)
    """
    width = max(len(s) for s in seqs) + 2
    ids = np.full((len(seqs), width), PAD, dtype=np.int64)
    for b, s in enumerate(seqs):
        ids[b, 0] = CLS
        ids[b, 1:len(s) + 1] = [TOKEN_OF.get(c, TOKEN_OF["X"]) for c in s]
        ids[b, len(s) + 1] = EOS
    return ids, (ids != PAD).astype(np.int64)


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
    hf_logging.disable_progress_bar()
    try:
        # Computed in float32 whatever the stored dtype (16-bit matmuls crawl on CPUs).
        model = EsmForMaskedLM.from_pretrained(str(resolved.path), attn_implementation=attn_implementation,
                                               use_safetensors=True, dtype=torch.float32)
    except (OSError, ValueError, RuntimeError) as e:
        raise WeightsIntegrityError(f"model '{name}': cannot load {resolved.path}: {str(e).splitlines()[0]}") from e
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    model.eval()
    return model, resolved
