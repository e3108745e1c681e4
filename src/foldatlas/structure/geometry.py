"""Physical checks of a protein structure: chain breaks, backbone bond and angle outliers, steric clashes.

What is checked, and the cut-offs (documented here so that every report means the same):

* **chain breaks**: consecutive residues of a chain (both with C and N) whose peptide C-N distance exceeds
  :data:`BREAK_CN` (2.0 A; the ideal bond is 1.33 A). A model with breaks draws as a broken ribbon.
* **bond-length outliers**: backbone N-CA, CA-C and peptide C-N bonds more than :data:`SIGMAS` (4) standard
  deviations from Engh & Huber's ideal values (the targets MolProbity and AlphaFold's violation checks use); peptide
  bonds across a chain break are counted as breaks, not outliers.
* **bond-angle outliers**: N-CA-C, CA-C-N and C-N-CA, likewise (4 sigma).
* **clashes**: pairs of heavy atoms of different, non-consecutive residues closer than the sum of their van der
  Waals radii minus :data:`CLASH_OVERLAP` (0.4 A, MolProbity's "serious clash"); a disulfide SG-SG pair is no clash.
  ``clashscore`` is clashes per 1,000 atoms, as MolProbity's, but on heavy atoms only (MolProbity adds hydrogens
  first), so it reads lower than MolProbity's on the same structure: an approximation, compared with itself.

Imports neither torch nor transformers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["GeometryReport", "geometry_report", "geometry_warning", "geometry_summary", "violating_atoms",
           "BREAK_CN", "SIGMAS", "CLASH_OVERLAP", "CLASHSCORE_LIMIT"]

BREAK_CN = 2.0  # A: a longer peptide C-N is a chain break
SIGMAS = 4.0  # bond and angle outliers: further than this many standard deviations from ideal
CLASH_OVERLAP = 0.4  # A of van der Waals overlap that makes a clash (MolProbity's serious clash)
CLASHSCORE_LIMIT = 40.0  # heavy-atom clashscore from which a model is called implausible (crystal structures: < 10)
# Engh & Huber (1991) ideals and standard deviations (A, degrees); proline's C-N is a little longer.
_BONDS = {"N-CA": (1.459, 0.020), "CA-C": (1.525, 0.026), "C-N": (1.329, 0.014)}
_ANGLES = {"N-CA-C": (111.0, 2.7), "CA-C-N": (116.2, 2.0), "C-N-CA": (121.7, 1.8)}
_RADII = {"C": 1.70, "N": 1.55, "O": 1.52, "S": 1.80}


@dataclass(frozen=True)
class GeometryReport:
    """What :func:`geometry_report` found.

    Attributes
    ----------
    residues, atoms : int
        Residues with a C-alpha and heavy atoms checked.
    chain_breaks : int
    breaks_per_100 : float
        Chain breaks per 100 residues.
    bond_outliers, angle_outliers : int
    bonds_checked, angles_checked : int
    clashes : int
    clashscore : float
        Clashes per 1,000 heavy atoms.
    worst_clash : float
        Largest overlap (A), 0 when none.
    """

    residues: int
    atoms: int
    chain_breaks: int
    breaks_per_100: float
    bond_outliers: int
    bonds_checked: int
    angle_outliers: int
    angles_checked: int
    clashes: int
    clashscore: float
    worst_clash: float

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    @property
    def plausible(self) -> bool:
        """No chain break and a clashscore under :data:`CLASHSCORE_LIMIT` (crystal structures score far lower)."""
        return self.chain_breaks == 0 and self.clashscore < CLASHSCORE_LIMIT


def _backbone_table(atoms):
    """Per residue (C-alpha order): N, CA, C coordinates (NaN where missing), chain ids, residue names, and the
    C-alpha atoms' indices."""
    from foldatlas.structure.io import residue_atoms

    ca_index, xyz = residue_atoms(atoms, ("N", "CA", "C"))
    return (xyz["N"], xyz["CA"], xyz["C"], np.asarray(atoms.chain_id[ca_index]), np.asarray(atoms.res_name[ca_index]),
            ca_index)


def _peptide_lengths(n: np.ndarray, c: np.ndarray, chains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """C-N distance of each consecutive residue pair, and which pairs are chain breaks."""
    with np.errstate(invalid="ignore"):
        cn = np.linalg.norm(n[1:] - c[:-1], axis=1)
        return cn, (chains[1:] == chains[:-1]) & np.isfinite(cn) & (cn > BREAK_CN)


def _clash_hits(heavy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clashing pairs of heavy atoms (see the module docstring): indices ``i``, ``j`` and their overlaps (A)."""
    from foldatlas.structure.io import residue_keys

    # residues numbered in key order (chain, number, insertion code): neighbours in a chain differ by one
    _, residue = np.unique(residue_keys(heavy), return_inverse=True)
    chain_of = np.unique(heavy.chain_id, return_inverse=True)[1]
    radius = np.array([_RADII.get(str(e).upper()[:1], 1.7) for e in heavy.element])
    pairs = _close_pairs(heavy.coord, 2 * max(_RADII.values()) - CLASH_OVERLAP)
    i, j = pairs[:, 0], pairs[:, 1]
    overlap = radius[i] + radius[j] - np.linalg.norm(heavy.coord[i] - heavy.coord[j], axis=1)
    near = (chain_of[i] == chain_of[j]) & (np.abs(residue[i] - residue[j]) <= 1)  # same or bonded residues
    disulfide = (heavy.atom_name[i] == "SG") & (heavy.atom_name[j] == "SG")
    hit = (overlap >= CLASH_OVERLAP) & ~near & ~disulfide
    return i[hit], j[hit], overlap[hit]


def _heavy_index(atoms) -> np.ndarray:
    return np.flatnonzero((atoms.element != "H") & (atoms.element != "D"))


def violating_atoms(atoms) -> np.ndarray:
    """Mask over ``atoms``: the atoms of every residue at a chain break or in a clash (what relaxation releases)."""
    from foldatlas.structure.io import residue_keys

    keys = residue_keys(atoms)
    n, _, c, chains, _, ca_index = _backbone_table(atoms)
    _, broken = _peptide_lengths(n, c, chains)
    bad = [keys[ca_index[:-1][broken]], keys[ca_index[1:][broken]]]
    heavy = _heavy_index(atoms)
    i, j, _ = _clash_hits(atoms[heavy])
    bad += [keys[heavy[i]], keys[heavy[j]]]
    return np.isin(keys, np.concatenate(bad))


def _angle(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    u, v = a - b, c - b
    cos = np.sum(u * v, axis=-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _outliers(values: np.ndarray, ideal: float, sigma: float) -> tuple[int, int]:
    ok = np.isfinite(values)
    return int((np.abs(values[ok] - ideal) > SIGMAS * sigma).sum()), int(ok.sum())


def geometry_summary(report: GeometryReport, ptm: float | None = None, mean_plddt: float | None = None) -> dict:
    """The report as JSON with ``plausible`` and the one-line ``warning`` (None when plausible), as every output
    (``NAME.json``, atlas entries, the HTTP API) carries it."""
    return {**report.to_dict(), "plausible": report.plausible,
            "warning": geometry_warning(report, ptm, mean_plddt)}


def geometry_warning(report: GeometryReport, ptm: float | None = None,
                     mean_plddt: float | None = None) -> str | None:
    """One line saying why a structure is physically implausible, or None when it is not.

    A prediction whose confidence is high (pTM >= 0.5 or mean pLDDT >= 70) while
    its geometry is implausible gets the stronger wording: its confidence and its
    geometry disagree, and neither should be trusted without a look.
    """
    problems = []
    if report.chain_breaks:
        problems.append(f"{report.chain_breaks} chain break{'s' if report.chain_breaks > 1 else ''} "
                        f"(peptide C-N over {BREAK_CN:g} A)")
    if report.clashscore >= CLASHSCORE_LIMIT:
        problems.append(f"clashscore {report.clashscore:.0f} (limit {CLASHSCORE_LIMIT:g})")
    if not problems:
        return None
    what = " and ".join(problems)
    confident = [f"pTM {ptm:.2f}" for _ in [0] if ptm is not None and ptm >= 0.5]
    confident += [f"mean pLDDT {mean_plddt:.0f}" for _ in [0] if mean_plddt is not None and mean_plddt >= 70]
    if confident:
        return f"confident ({', '.join(confident)}) but physically implausible: {what}"
    return f"physically implausible: {what}"


def _close_pairs(coord: np.ndarray, radius: float) -> np.ndarray:
    """Index pairs ``i < j`` of points closer than ``radius`` (biotite's cell list), shape (P, 2)."""
    import biotite.structure as struc

    if len(coord) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    near = struc.CellList(np.asarray(coord, dtype=np.float32), cell_size=radius).get_atoms(coord, radius)
    i = np.repeat(np.arange(len(coord)), near.shape[1])
    j = near.reshape(-1)
    keep = (j >= 0) & (j > i)
    return np.stack([i[keep], j[keep]], axis=1)


def geometry_report(atoms) -> GeometryReport:
    """Check a structure's backbone geometry and steric clashes (see the module docstring for the cut-offs).

    Parameters
    ----------
    atoms : biotite.structure.AtomArray
        One model; hydrogens are ignored.

    Returns
    -------
    GeometryReport
    """
    n, ca, c, chains, names, _ = _backbone_table(atoms)
    cn, broken = _peptide_lengths(n, c, chains)
    linked = (chains[1:] == chains[:-1]) & np.isfinite(cn) & ~broken
    with np.errstate(invalid="ignore"):
        bond_out, bond_n = 0, 0
        for values, (ideal, sigma) in ((np.linalg.norm(ca - n, axis=1), _BONDS["N-CA"]),
                                       (np.linalg.norm(c - ca, axis=1), _BONDS["CA-C"])):
            o, k = _outliers(values, ideal, sigma)
            bond_out, bond_n = bond_out + o, bond_n + k
        pro = names[1:] == "PRO"
        peptide = cn[linked]
        ideal = np.where(pro[linked], 1.341, _BONDS["C-N"][0])
        sig = np.where(pro[linked], 0.016, _BONDS["C-N"][1])
        bond_out += int((np.abs(peptide - ideal) > SIGMAS * sig).sum())
        bond_n += int(linked.sum())
        angle_out, angle_n = _outliers(_angle(n, ca, c), *_ANGLES["N-CA-C"])
        for values, key in ((_angle(ca[:-1], c[:-1], n[1:])[linked], "CA-C-N"),
                            (_angle(c[:-1], n[1:], ca[1:])[linked], "C-N-CA")):
            o, k = _outliers(values, *_ANGLES[key])
            angle_out, angle_n = angle_out + o, angle_n + k

    heavy = atoms[_heavy_index(atoms)]
    _, _, overlap = _clash_hits(heavy)
    clashes, worst = len(overlap), float(overlap.max()) if len(overlap) else 0.0
    residues = len(ca)
    return GeometryReport(residues=residues, atoms=len(heavy), chain_breaks=int(broken.sum()),
                          breaks_per_100=round(float(100.0 * broken.sum() / max(residues, 1)), 3),
                          bond_outliers=bond_out, bonds_checked=bond_n, angle_outliers=angle_out,
                          angles_checked=angle_n, clashes=clashes,
                          clashscore=round(1000.0 * clashes / max(len(heavy), 1), 2), worst_clash=round(worst, 3))
