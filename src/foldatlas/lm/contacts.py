"""Contact maps from a language model's attention (ESM-2's recipe: the attention maps of every layer and head,
symmetrised and APC-corrected, through the model's logistic regression; transformers' ``predict_contacts``).

Only models with a contact head have them (ESM-2; ESM C has none and is refused with one line naming the model)."""

from __future__ import annotations

import numpy as np

from foldatlas.lm.model import LanguageModel, encode, forward, single_chain

__all__ = ["predict_contacts", "top_contacts"]


def predict_contacts(lm: LanguageModel, records: list, max_tokens: int = 4096, progress=None) -> list[np.ndarray]:
    """Contact probabilities, (L, L) symmetric, one map per record (single chains of at most 1,022 residues).

    Raises
    ------
    InvalidOptionError
        If the model has no contact head (ESM C), before anything is computed.
    InvalidSequenceError, SequenceTooLongError
    """
    lm.check_contact_head()
    sequences = [single_chain(r, "contact prediction") for r in records]
    maps: list[np.ndarray | None] = [None] * len(records)
    for i, out in forward(lm, [encode(s) for s in sequences], max_tokens, logits=False, attentions=True,
                          progress=progress):
        maps[i] = out["contacts"].astype(np.float32)
    return maps


def top_contacts(probs: np.ndarray, min_separation: int = 6, top: int | None = None) -> list[tuple[int, int, float]]:
    """The most probable pairs ``(i, j, p)`` (1-based, ``j - i >= min_separation``), best first; default top L."""
    n = len(probs)
    i, j = np.triu_indices(n, k=min_separation)
    order = np.argsort(-probs[i, j], kind="stable")[: (n if top is None else top)]
    return [(int(i[k]) + 1, int(j[k]) + 1, float(probs[i[k], j[k]])) for k in order]
