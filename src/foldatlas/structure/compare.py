"""Compare a model with a reference structure: TM-score, RMSD, GDT-TS, lDDT-Cα."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from foldatlas.errors import InvalidFileError
from foldatlas.files import atomic_write_text
from foldatlas.structure.io import ca_trace, read_structure, select_chains, to_mmcif_string, to_pdb_string
from foldatlas.structure.metrics import gdt_ts, lddt, superposed_rmsd

__all__ = ["Comparison", "compare_structures", "compare_files"]


@dataclass(frozen=True)
class Comparison:
    """Similarity of a model to a reference.

    Attributes
    ----------
    tm_score : float
        TM-align's TM-score normalised by the reference length.
    tm_score_model : float
        The same alignment's TM-score normalised by the model length.
    rmsd : float
        Cα RMSD (Å) over all corresponding residues after optimal superposition.
    gdt_ts : float
        GDT-TS on corresponding residues, in [0, 1].
    lddt_ca : float
        lDDT on Cα atoms of corresponding residues, in [0, 1].
    aligned_length : int
        Residue pairs TM-align aligns within 5 Å.
    tmalign_rmsd : float
        TM-align's RMSD over its aligned pairs (Å).
    sequence_identity : float
        Identical residues over corresponding residues.
    model_length, reference_length, corresponding : int
        Residue counts; ``corresponding`` pairs are matched by sequence.
    """

    tm_score: float
    tm_score_model: float
    rmsd: float
    gdt_ts: float
    lddt_ca: float
    aligned_length: int
    tmalign_rmsd: float
    sequence_identity: float
    model_length: int
    reference_length: int
    corresponding: int

    def to_dict(self) -> dict:
        """The comparison as a plain dict (JSON-ready)."""
        return asdict(self)


def _correspondence(seq_a: str, seq_b: str) -> tuple[np.ndarray, np.ndarray]:
    """Residue pairs matched by sequence: identity if equal, else global alignment."""
    if seq_a == seq_b:
        idx = np.arange(len(seq_a))
        return idx, idx
    from biotite.sequence import ProteinSequence
    from biotite.sequence.align import SubstitutionMatrix, align_optimal

    def protein(s: str) -> ProteinSequence:
        return ProteinSequence(s.replace("U", "C").replace("O", "K"))

    matrix = SubstitutionMatrix.std_protein_matrix()
    alignment = align_optimal(protein(seq_a), protein(seq_b), matrix, gap_penalty=(-10, -1), max_number=1)[0]
    trace = alignment.trace
    both = (trace[:, 0] >= 0) & (trace[:, 1] >= 0)
    return trace[both, 0], trace[both, 1]


def compare_structures(model, reference) -> tuple[Comparison, object]:
    """Compare two biotite ``AtomArray`` structures.

    Parameters
    ----------
    model, reference : biotite.structure.AtomArray

    Returns
    -------
    comparison : Comparison
    superposed : biotite.structure.AtomArray
        The model moved onto the reference by TM-align's superposition.
    """
    import tmtools

    m_ca, m_seq, _ = ca_trace(model)
    r_ca, r_seq, _ = ca_trace(reference)
    if len(m_ca) < 3 or len(r_ca) < 3:
        raise InvalidFileError("structures need at least 3 residues to compare")
    res = tmtools.tm_align(m_ca, r_ca, m_seq, r_seq)
    i, j = _correspondence(m_seq, r_seq)
    if len(i) < 3:
        raise InvalidFileError("fewer than 3 residues correspond between model and reference sequences")
    superposed = model.copy()
    superposed.coord = (superposed.coord.astype(np.float64) @ res.u.T + res.t).astype(np.float32)
    comparison = Comparison(
        tm_score=float(res.tm_norm_chain2),
        tm_score_model=float(res.tm_norm_chain1),
        rmsd=superposed_rmsd(m_ca[i], r_ca[j]),
        gdt_ts=gdt_ts(m_ca[i], r_ca[j]),
        lddt_ca=float(lddt(m_ca[i], r_ca[j])),
        aligned_length=int(str(res.seqM).count(":")),
        tmalign_rmsd=float(res.rmsd),
        sequence_identity=float(np.mean([m_seq[a] == r_seq[b] for a, b in zip(i, j)])),
        model_length=len(m_ca),
        reference_length=len(r_ca),
        corresponding=len(i),
    )
    return comparison, superposed


def compare_files(model_path: str | Path, reference_path: str | Path, model_chains: str | None = None,
                  reference_chains: str | None = None, superposed_path: str | Path | None = None) -> Comparison:
    """Compare two structure files (PDB or mmCIF, gzipped or not).

    Parameters
    ----------
    model_path, reference_path : str or Path
    model_chains, reference_chains : str, optional
        Comma-separated chain ids to keep (default: all chains).
    superposed_path : str or Path, optional
        Write the model superposed on the reference here (``.pdb`` or ``.cif``).

    Returns
    -------
    Comparison

    Raises
    ------
    InvalidFileError
        If a file cannot be read, a chain is missing, or too few residues match.
    """
    model = select_chains(read_structure(model_path), model_chains, str(model_path))
    reference = select_chains(read_structure(reference_path), reference_chains, str(reference_path))
    comparison, superposed = compare_structures(model, reference)
    if superposed_path is not None:
        path = Path(superposed_path)
        text = (to_mmcif_string(superposed, name=path.stem) if path.suffix.lower() in (".cif", ".mmcif")
                else to_pdb_string(superposed, remarks=[f"superposed on {Path(reference_path).name} by TM-align"]))
        atomic_write_text(path, text)
    return comparison
