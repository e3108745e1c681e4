"""Mean language-model embeddings of proteins (ESM-2 or ESM C, through transformers).

The mean embedding is ESM's usual per-protein representation: the last layer's hidden states
(after the final norm: ESM-2's ``emb_layer_norm_after``, ESM C's ``EsmcModel.norm``; the
encoder's ``last_hidden_state``) averaged over the residues, ``<cls>``, ``<eos>`` and padding
excluded. A complex is embedded one chain at a time (no linker) and averaged over all its
residues. Chains longer than ``window`` residues are embedded in consecutive windows (ESM-2 was
trained on crops of 1,022 residues; ESM C uses the same windows), each residue once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foldatlas.models.language import LanguageModel, encoder_of, load_language_model, tokenize
from foldatlas.seq.batching import token_batches

__all__ = ["Embedder", "load_embedder", "mean_embeddings", "WINDOW"]

WINDOW = 1022  # residues per forward pass, as fair-esm's extract script truncates


@dataclass
class Embedder(LanguageModel):
    """A loaded language model that computes mean embeddings (see :class:`LanguageModel` for the attributes;
    ``dim`` is the embedding width)."""

    def __call__(self, sequences: list[str], max_tokens_per_batch: int = 1024) -> np.ndarray:
        """Mean embeddings of sequences (``:`` between chains); see :func:`mean_embeddings`."""
        return mean_embeddings(self, sequences, max_tokens_per_batch=max_tokens_per_batch)


def load_embedder(name: str) -> Embedder:
    """Load a language model for embeddings: the embedded model, ESM-2 (``facebook/esm2_*``), ESM C
    (``biohub/ESMC-*``, ``esmc_300m``, ...) or a folder.

    The whole model is held in float32, not streamed from 16-bit weights: an atlas build embeds batch after batch,
    and converting every layer again for each one would cost time for the little memory an embedding model takes.

    Raises
    ------
    UnknownModelError, WeightsNotFoundError, WeightsIntegrityError
    """
    from foldatlas.models.loading import weights_sha256

    # PyTorch's fused attention: 1.5x faster than the eager path on a CPU, same values.
    model, resolved = load_language_model(name, attn_implementation="sdpa")
    return Embedder(model=model, name=resolved.name, weights_sha256=weights_sha256(resolved.path), spec=name)


def _pieces(sequence: str, window: int) -> list[str]:
    out = []
    for chain in sequence.split(":"):
        out.extend(chain[i:i + window] for i in range(0, len(chain), window))
    return out


def mean_embeddings(model, sequences: list[str], max_tokens_per_batch: int = 1024,
                    window: int = WINDOW) -> np.ndarray:
    """Mean last-layer embeddings, one row per sequence.

    Parameters
    ----------
    model : LanguageModel, or a transformers masked LM or encoder
        ``EsmForMaskedLM``, ``EsmModel``, ``EsmcForMaskedLM`` or ``EsmcModel``.
    sequences : list of str
        Validated sequences; ``:`` separates the chains of a complex.
    max_tokens_per_batch : int
        Padded tokens per forward pass (length-sorted batches).
    window : int
        Longest piece embedded in one pass.

    Returns
    -------
    ndarray of float32, shape (N, D)
        The same values whether a sequence is embedded alone or in a padded batch (the attention
        mask keeps padding out; differences are at float32 rounding level).
    """
    import torch

    pieces: list[str] = []
    owner: list[int] = []
    for k, seq in enumerate(sequences):
        for piece in _pieces(seq, window):
            pieces.append(piece)
            owner.append(k)
    encoder = model.encoder if isinstance(model, LanguageModel) else encoder_of(model)
    dim = int(encoder.config.hidden_size)
    sums = np.zeros((len(sequences), dim), dtype=np.float64)
    counts = np.zeros(len(sequences), dtype=np.int64)
    device = next(encoder.parameters()).device
    for batch in token_batches([len(p) + 2 for p in pieces], max_tokens_per_batch):
        ids, mask = tokenize([pieces[i] for i in batch])
        with torch.inference_mode():
            hidden = encoder(input_ids=torch.from_numpy(ids).to(device),
                             attention_mask=torch.from_numpy(mask).to(device)).last_hidden_state  # after the final norm
        hidden = hidden.float().cpu().numpy()  # [B, T, D]
        for row, i in enumerate(batch):
            n = len(pieces[i])
            sums[owner[i]] += hidden[row, 1:n + 1].sum(axis=0, dtype=np.float64)
            counts[owner[i]] += n
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
