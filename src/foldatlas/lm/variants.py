"""Zero-shot variant effects from a masked language model (ESM-1v's scoring rules).

For a variant with substitutions ``wt_i -> mt_i`` at positions ``i``, with ``log p`` the model's log-softmax
over all its logits (ESM-2: 33, ESM C: 64), read at the amino acids' token ids (the same in both families):

* **masked marginal**: ``sum_i log p(mt_i | x with i masked) - log p(wt_i | x with i masked)``, one forward pass
  per mutated position (ESM-1v's best rule; a multi-mutant sums its single-position terms);
* **wild-type marginal**: the same with the unmasked wild type (one forward pass for every variant);
* **pseudo-log-likelihood**: ``PLL(mutant) - PLL(wild type)``, ``PLL(s) = sum_j log p(s_j | s with j masked)``:
  one forward pass per residue per variant, L times the cost of the others.

Sequences longer than the model's context (1,022 residues) are scored in windows: each position's log-probabilities
come from the 1,022-residue window centred on it (clamped to the sequence ends), as Brandes et al. (2023) scored
long human proteins with ESM-1b. Up to 1,022 residues the window is the whole sequence and nothing changes.

Higher scores mean the model finds the variant more plausible (expected fitter). Mutations are written ``A42G``
(wild type, position, mutant; positions from ``offset``, 1 by default), several in one variant as ``A42G:B43C``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from foldatlas.errors import InvalidOptionError, InvalidSequenceError
from foldatlas.lm.model import AMINO_ACIDS, MAX_RESIDUES, LanguageModel, encode, forward
from foldatlas.models.language import MASK, TOKEN_OF

__all__ = ["Mutation", "parse_variants", "single_scan", "score_variants", "check_methods", "variant_tokens",
           "METHODS"]

METHODS = ("masked_marginal", "wt_marginal", "pll")
_NOTATION = re.compile(r"^([A-Z])(-?\d+)([A-Z])$")


@dataclass(frozen=True)
class Mutation:
    """One substitution: wild-type letter, position as written, mutant letter, 0-based index."""

    wt: str
    position: int
    mt: str
    index: int

    def __str__(self) -> str:
        return f"{self.wt}{self.position}{self.mt}"


def parse_variants(items: list[str], sequence: str, offset: int = 1) -> list[tuple[Mutation, ...]]:
    """Parse and check variants against the wild type.

    Parameters
    ----------
    items : list of str
        ``A42G`` or ``A42G:B43C`` (case-insensitive; spaces ignored).
    sequence : str
        The wild type.
    offset : int
        The number of the sequence's first residue.

    Raises
    ------
    InvalidSequenceError
        Naming the variant: bad notation, a position outside the sequence, a wild-type letter that differs
        from the sequence, a mutant letter that is not one of the 20 amino acids, a position given twice.
    """
    out = []
    last = offset + len(sequence) - 1
    for item in items:
        text = item.replace(" ", "").upper()
        if not text:
            continue
        muts: list[Mutation] = []
        for part in text.split(":"):
            m = _NOTATION.match(part)
            if m is None:
                raise InvalidSequenceError(f"variant '{item}': '{part}' is not a mutation like A42G "
                                           f"(wild type, position, mutant)")
            wt, pos, mt = m.group(1), int(m.group(2)), m.group(3)
            index = pos - offset
            if not 0 <= index < len(sequence):
                raise InvalidSequenceError(f"variant '{item}': position {pos} is outside the sequence "
                                           f"({offset}..{last}; --offset sets the first number)")
            if sequence[index] != wt:
                raise InvalidSequenceError(f"variant '{item}': the sequence has {sequence[index]} at {pos}, not "
                                           f"{wt} (check --offset)")
            if mt not in AMINO_ACIDS:
                raise InvalidSequenceError(f"variant '{item}': mutant '{mt}' is not one of the 20 amino acids")
            if any(x.index == index for x in muts):
                raise InvalidSequenceError(f"variant '{item}': position {pos} is mutated twice")
            muts.append(Mutation(wt, pos, mt, index))
        out.append(tuple(muts))
    if not out:
        raise InvalidSequenceError("no variants given")
    return out


def single_scan(sequence: str, offset: int = 1) -> list[tuple[Mutation, ...]]:
    """Every single substitution to the 19 other amino acids, position by position."""
    return [(Mutation(wt, i + offset, mt, i),) for i, wt in enumerate(sequence) for mt in AMINO_ACIDS
            if mt != wt and wt in AMINO_ACIDS]


def _window(length: int, index: int) -> tuple[int, int]:
    """The model-context window ``[start, end)`` scoring 0-based position ``index``: centred, clamped to the ends."""
    if length <= MAX_RESIDUES:
        return 0, length
    start = min(max(0, index - MAX_RESIDUES // 2), length - MAX_RESIDUES)
    return start, start + MAX_RESIDUES


def _masked_window(sequence: str, index: int) -> tuple[np.ndarray, int]:
    """Tokens of position ``index``'s window with that position masked, and the position's token row."""
    start, end = _window(len(sequence), index)
    tokens = encode(sequence[start:end])
    row = index - start + 1  # +1: <cls>
    tokens[row] = MASK
    return tokens, row


def _wt_log_probs(lm: LanguageModel, sequence: str, positions: list[int], max_tokens: int,
                  progress=None) -> dict[int, np.ndarray]:
    """log p(. | unmasked sequence) at each position (0-based): one forward pass per window used."""
    windows = sorted({_window(len(sequence), i) for i in positions})
    by_window = {}
    for k, res in forward(lm, [encode(sequence[a:b]) for a, b in windows], max_tokens, progress=progress):
        by_window[windows[k]] = res["log_probs"]
    out = {}
    for i in positions:
        start, end = _window(len(sequence), i)
        out[i] = by_window[(start, end)][i - start + 1]
    return out


def _masked_log_probs(lm: LanguageModel, sequence: str, positions: list[int], max_tokens: int,
                      progress=None) -> dict[int, np.ndarray]:
    """log p(. | sequence with position i masked) at i, for each position (0-based)."""
    jobs = [_masked_window(sequence, i) for i in positions]
    out = {}
    for k, res in forward(lm, [t for t, _ in jobs], max_tokens, progress=progress):
        out[positions[k]] = res["log_probs"][jobs[k][1]]
    return out


def _pll(lm: LanguageModel, sequences: list[str], max_tokens: int, progress=None) -> list[float]:
    jobs, owner, where = [], [], []
    for s, seq in enumerate(sequences):
        for i in range(len(seq)):
            tokens, row = _masked_window(seq, i)
            jobs.append(tokens)
            owner.append(s)
            where.append((row, TOKEN_OF[seq[i]] if seq[i] in TOKEN_OF else TOKEN_OF["X"]))
    totals = np.zeros(len(sequences))
    for k, res in forward(lm, jobs, max_tokens, progress=progress):
        row, tok = where[k]
        totals[owner[k]] += res["log_probs"][row, tok]
    return totals.tolist()


def variant_tokens(sequence: str, variants: list[tuple[Mutation, ...]], methods: tuple[str, ...]) -> int:
    """Tokens :func:`score_variants` runs through the model (a progress bar's total)."""
    per_pass = min(len(sequence), MAX_RESIDUES) + 2
    positions = {m.index for v in variants for m in v}
    total = 0
    if "wt_marginal" in methods:
        total += per_pass * len({_window(len(sequence), i) for i in positions})
    if "masked_marginal" in methods:
        total += per_pass * len(positions)
    if "pll" in methods:
        total += per_pass * len(sequence) * (len(variants) + 1)
    return total


def check_methods(methods: tuple[str, ...]) -> None:
    """Refuse unknown scoring methods (InvalidOptionError)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InvalidOptionError(f"unknown scoring method(s) {', '.join(unknown) or '(none)'}: use "
                                 f"{', '.join(METHODS)}")


def score_variants(lm: LanguageModel, sequence: str, variants: list[tuple[Mutation, ...]],
                   methods: tuple[str, ...] = ("masked_marginal", "wt_marginal"), max_tokens: int = 4096,
                   progress=None) -> list[dict]:
    """Score variants of a wild-type sequence.

    Parameters
    ----------
    lm : LanguageModel
    sequence : str
        The wild type (one chain).
    variants : list of tuple of Mutation
        From :func:`parse_variants` or :func:`single_scan`.
    methods : tuple of str
        Any of :data:`METHODS`.
    max_tokens : int
        Padded tokens per forward pass.
    progress : callable, optional
        Receives token counts of finished batches.

    Returns
    -------
    list of dict
        Per variant: ``mutant`` (``A42G:B43C``), ``n_mutations`` and one column per method.
    """
    check_methods(methods)
    rows = [{"mutant": ":".join(str(m) for m in v), "n_mutations": len(v)} for v in variants]
    if "wt_marginal" in methods:
        lps = _wt_log_probs(lm, sequence, sorted({m.index for v in variants for m in v}), max_tokens, progress)
        for row, v in zip(rows, variants):
            row["wt_marginal"] = float(sum(lps[m.index][TOKEN_OF[m.mt]] - lps[m.index][TOKEN_OF[m.wt]] for m in v))
    if "masked_marginal" in methods:
        positions = sorted({m.index for v in variants for m in v})
        lps = _masked_log_probs(lm, sequence, positions, max_tokens, progress)
        for row, v in zip(rows, variants):
            row["masked_marginal"] = float(sum(lps[m.index][TOKEN_OF[m.mt]] - lps[m.index][TOKEN_OF[m.wt]]
                                               for m in v))
    if "pll" in methods:
        mutants = []
        for v in variants:
            s = list(sequence)
            for m in v:
                s[m.index] = m.mt
            mutants.append("".join(s))
        scores = _pll(lm, [sequence, *mutants], max_tokens, progress)
        for row, score in zip(rows, scores[1:]):
            row["pll"] = float(score - scores[0])
    return rows
