"""Variant effects from structure: ProteinMPNN's log-odds of the mutant against the wild-type amino acid at each
mutated position, the position decoded last (given the backbone and the whole wild-type sequence; see
:func:`foldatlas.design.mpnn.position_log_probs`). A multi-mutant sums its positions' terms, as the language
model's masked marginal does.

The wild type is aligned to the structure's chain (global alignment, BLOSUM62), so a structure of a variant, a
construct with extra or missing residues, or other numbering still serves: the wild type's amino acids are read on
the aligned residues, and a mutation at a residue the structure lacks (or whose backbone is incomplete) gets no
score.
"""

from __future__ import annotations

import numpy as np

from foldatlas.errors import InvalidOptionError

__all__ = ["align_to_structure", "structure_variant_scores"]


def align_to_structure(sequence: str, structure_sequence: str) -> np.ndarray:
    """For each residue of ``sequence``, the index of the aligned residue of ``structure_sequence`` (-1: none).

    Raises
    ------
    InvalidOptionError
        If fewer than half of the sequence's residues align to identical residues (another protein).
    """
    from biotite.sequence import ProteinSequence
    from biotite.sequence.align import SubstitutionMatrix, align_optimal

    clean = lambda s: "".join(c if c in "ACDEFGHIKLMNPQRSTVWY" else "X" for c in s.upper())  # noqa: E731
    matrix = SubstitutionMatrix.std_protein_matrix()
    alignment = align_optimal(ProteinSequence(clean(sequence)), ProteinSequence(clean(structure_sequence)), matrix,
                              gap_penalty=(-10, -1), terminal_penalty=False, max_number=1)[0]
    out = np.full(len(sequence), -1, dtype=np.int64)
    for i, j in alignment.trace:
        if i >= 0 and j >= 0:
            out[i] = j
    paired = out >= 0
    same = sum(sequence[i].upper() == structure_sequence[out[i]] for i in np.flatnonzero(paired))
    if same < len(sequence) / 2:
        raise InvalidOptionError(f"--structure: only {same} of the wild type's {len(sequence)} residues match the "
                                 "structure's chain; is it the same protein (pick the chain with --chain)?")
    return out


def structure_variant_scores(atoms, sequence: str, variants: list, chain: str | None = None,
                             model: str = "proteinmpnn", num_orders: int = 4, seed: int = 0) -> list[float | None]:
    """ProteinMPNN scores of variants of ``sequence`` on a structure (higher: more plausible).

    Parameters
    ----------
    atoms : biotite.structure.AtomArray
    sequence : str
        The wild type.
    variants : list of tuple of foldatlas.lm.variants.Mutation
    chain : str, optional
        The structure's chain of the protein (default: the only chain, or the best-matching one).
    model : str
    num_orders : int
        Random decoding orders of the other residues averaged over.
    seed : int

    Returns
    -------
    list of float or None
        One score per variant; None where a mutated residue is not in the structure.
    """
    from foldatlas.design.features import backbone
    from foldatlas.design.mpnn import position_log_probs
    from foldatlas.models.proteinmpnn import MPNN_ALPHABET

    bb = backbone(atoms)
    chains = bb.chain_sequences()
    if chain is not None and chain not in chains:
        raise InvalidOptionError(f"--chain: no chain {chain} in the structure (chains: {', '.join(chains)})")
    if chain is None:  # the only chain, or the one the wild type matches best
        chain = next(iter(chains)) if len(chains) == 1 else max(chains, key=lambda c: _identity(sequence, chains[c]))
    start = int(np.flatnonzero(bb.chain_ids == chain)[0])
    mapping = align_to_structure(sequence, chains[chain])
    threaded = list(bb.sequence)
    for i, j in enumerate(mapping):
        if j >= 0:
            threaded[start + j] = sequence[i].upper() if sequence[i].upper() in MPNN_ALPHABET else "X"
    wanted = sorted({start + int(mapping[m.index]) for v in variants for m in v if mapping[m.index] >= 0})
    lp = position_log_probs(atoms, "".join(threaded), model=model, num_orders=num_orders, seed=seed,
                            positions=wanted)
    out: list[float | None] = []
    for v in variants:
        terms = []
        for m in v:
            j = mapping[m.index]
            row = lp[start + j] if j >= 0 else None
            if row is None or np.isnan(row).any():
                terms = None
                break
            terms.append(float(row[MPNN_ALPHABET.index(m.mt)] - row[MPNN_ALPHABET.index(m.wt)]))
        out.append(None if terms is None else float(sum(terms)))
    return out


def _identity(a: str, b: str) -> float:
    try:
        mapping = align_to_structure(a, b)
    except InvalidOptionError:
        return 0.0
    return float(np.mean([a[i] == b[j] for i, j in enumerate(mapping) if j >= 0])) if (mapping >= 0).any() else 0.0
