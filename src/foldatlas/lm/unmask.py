"""Fill masked positions: ``<mask>`` tokens or ``_`` in a sequence, with the model's top-k amino acids."""

from __future__ import annotations

import re

import numpy as np

from foldatlas.errors import InvalidSequenceError, SequenceTooLongError
from foldatlas.lm.model import AMINO_ACIDS, MAX_RESIDUES, LanguageModel, encode, forward
from foldatlas.models.language import MASK, TOKEN_OF
from foldatlas.seq.records import clean_sequence

__all__ = ["parse_masked", "unmask"]

_MASK = re.compile(r"<mask>|_", re.IGNORECASE)


def parse_masked(text: str, name: str = "query") -> tuple[str, list[int]]:
    """A sequence with masks -> (sequence with ``X`` at the masks, 0-based masked positions).

    Raises
    ------
    InvalidSequenceError
        No mask, an invalid residue (its position named), or a complex.
    """
    if ":" in text:
        raise InvalidSequenceError(f"record '{name}': a complex (':'); unmask takes one chain")
    pieces = _MASK.split(re.sub(r"\s+", "", text))
    if len(pieces) < 2:
        raise InvalidSequenceError(f"record '{name}': no masked position; write <mask> or _ where residues are "
                                   f"to be predicted")
    seq, masks = "", []
    for k, piece in enumerate(pieces):
        if piece:
            seq += clean_sequence(piece, record=name)[0][0]
        if k < len(pieces) - 1:
            masks.append(len(seq))
            seq += "X"
    if len(seq) > MAX_RESIDUES:
        raise SequenceTooLongError(f"record '{name}': {len(seq)} residues; unmask takes at most {MAX_RESIDUES}")
    return seq, masks


def unmask(lm: LanguageModel, text: str, top_k: int = 5, name: str = "query") -> dict:
    """Predict every masked position at once (one forward pass).

    Probabilities are the model's softmax renormalised over the 20 standard amino acids.

    Returns
    -------
    dict
        ``sequence`` (the masks filled with the best amino acid), ``positions``: per mask its 1-based
        ``position`` and ``candidates`` (``residue``, ``probability``), best first.
    """
    if not 1 <= top_k <= 20:
        raise InvalidSequenceError("top_k must be between 1 and 20")
    seq, masks = parse_masked(text, name)
    tokens = encode(seq)
    for i in masks:
        tokens[i + 1] = MASK
    _, out = next(forward(lm, [tokens]))
    aa_ids = [TOKEN_OF[a] for a in AMINO_ACIDS]
    filled = list(seq)
    positions = []
    for i in masks:
        logits = out["log_probs"][i + 1, aa_ids].astype(np.float64)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        order = np.argsort(-p, kind="stable")[:top_k]
        filled[i] = AMINO_ACIDS[order[0]]
        positions.append({"position": i + 1, "candidates": [{"residue": AMINO_ACIDS[k], "probability":
                                                             round(float(p[k]), 5)} for k in order]})
    return {"name": name, "sequence": "".join(filled), "positions": positions}
