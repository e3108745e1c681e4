"""Restrained energy minimisation of a protein model with OpenMM, as AlphaFold's and ColabFold's Amber relaxation.

The recipe (AlphaFold 2, supplement 1.8.6, ``alphafold/relax``), with the cut-offs documented here:

1. PDBFixer adds missing heavy atoms (terminal OXT, side-chain atoms a backbone-only model lacks) and
   hydrogens at pH 7; missing residues are not built.
2. The Amber ff14SB force field (``amber14-all.xml``; AlphaFold used its predecessor ff99SB) in vacuum, no
   cut-off, bonds to hydrogen constrained; every heavy atom held to its starting position by a harmonic
   restraint of :attr:`RelaxOptions.stiffness` (10 kcal/mol/A^2, AlphaFold's).
3. L-BFGS minimisation (``LocalEnergyMinimizer``) to OpenMM's tolerance.
4. The geometry report (:mod:`foldatlas.structure.geometry`) of the result; while it still has chain breaks
   or clashes and rounds are left, the residues at the breaks and in the clashes lose their restraints and
   the minimisation runs again from where it stopped (AlphaFold's outer loop).

Hydrogens are removed from the result unless asked for; each atom keeps its B-factor (pLDDT for predictions),
atoms PDBFixer added take their residue's C-alpha value. OpenMM and PDBFixer are an optional extra
(``pip install 'foldatlas[relax]'``); without them :func:`relax_structure` raises
:class:`~foldatlas.errors.MissingExtraError` with that one line. Imports neither torch nor transformers.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np

from foldatlas.errors import InvalidFileError, MissingExtraError
from foldatlas.structure.geometry import GeometryReport, geometry_report, violating_atoms

__all__ = ["RelaxOptions", "RelaxResult", "relax_structure", "relax_available", "require_relax", "write_relaxed"]

_KCAL = 4.184  # kJ per kcal


@dataclass(frozen=True)
class RelaxOptions:
    """Settings of :func:`relax_structure`.

    Attributes
    ----------
    stiffness : float
        Heavy-atom restraint, kcal/mol/A^2 (AlphaFold: 10).
    max_rounds : int
        Minimisations at most; after each, residues still at a break or in a clash are released.
    max_iterations : int
        L-BFGS iterations per round; 0: until converged.
    keep_hydrogens : bool
        Keep the hydrogens added for the minimisation in the result.
    threads : int or None
        CPU threads for OpenMM (None: OpenMM's choice).
    cutoff : float or None
        Non-bonded cut-off in A (None: none, as AlphaFold). A cut-off of 10 A makes each step grow with the
        atoms rather than their square: several times faster on long chains, for nearly the same result
        (BENCHMARKS.md, "Relaxation").
    """

    stiffness: float = 10.0
    max_rounds: int = 3
    max_iterations: int = 0
    keep_hydrogens: bool = False
    threads: int | None = None
    cutoff: float | None = None


@dataclass
class RelaxResult:
    """What :func:`relax_structure` did.

    Attributes
    ----------
    atoms : biotite.structure.AtomArray
        The relaxed structure.
    before, after : GeometryReport
    ca_rmsd : float
        C-alpha RMSD (A) between the input and the result (no superposition: restraints keep the frame).
    rounds : int
    energy_start, energy_end : float
        Potential energy (kcal/mol) with restraints, before the first and after the last round.
    seconds : float
    """

    atoms: object
    before: GeometryReport
    after: GeometryReport
    ca_rmsd: float
    rounds: int
    energy_start: float
    energy_end: float
    seconds: float

    def to_dict(self) -> dict:
        """JSON-ready summary (the structure left out)."""
        return {"before": self.before.to_dict(), "after": self.after.to_dict(), "ca_rmsd": round(self.ca_rmsd, 3),
                "rounds": self.rounds, "energy_start_kcal": round(self.energy_start, 1),
                "energy_end_kcal": round(self.energy_end, 1), "seconds": round(self.seconds, 2),
                "force_field": "amber14-all (ff14SB), vacuum", "restraints": "heavy atoms, harmonic"}


def require_relax() -> None:
    """Raise :class:`~foldatlas.errors.MissingExtraError` unless OpenMM and PDBFixer can be imported."""
    _imports()


def relax_available() -> bool:
    """Whether OpenMM and PDBFixer can be imported."""
    try:
        _imports()
    except MissingExtraError:
        return False
    return True


def _imports():
    try:
        import openmm
        import pdbfixer
        from openmm import app, unit
    except ImportError:
        raise MissingExtraError("relaxation needs OpenMM and PDBFixer: pip install 'foldatlas[relax]'") from None
    return openmm, app, unit, pdbfixer


def _protein_heavy_atoms(atoms):
    import biotite.structure as struc

    if isinstance(atoms, struc.AtomArrayStack):
        atoms = atoms[0]
    keep = struc.filter_amino_acids(atoms) & (atoms.element != "H") & (atoms.element != "D")
    protein = atoms[keep]
    if protein.array_length() == 0:
        raise InvalidFileError("no protein atoms to relax")
    return protein


def _atom_keys(atoms) -> list[tuple]:
    ins = atoms.ins_code if "ins_code" in atoms.get_annotation_categories() else [""] * atoms.array_length()
    return [(str(c), int(r), str(i).strip(), str(a)) for c, r, i, a in zip(atoms.chain_id, atoms.res_id, ins,
                                                                           atoms.atom_name)]


def relax_structure(atoms, options: RelaxOptions = RelaxOptions()) -> RelaxResult:
    """Relax a protein structure by restrained Amber minimisation (see the module docstring).

    Parameters
    ----------
    atoms : biotite.structure.AtomArray
        The model (ligands, water and hydrogens are dropped).
    options : RelaxOptions

    Returns
    -------
    RelaxResult

    Raises
    ------
    MissingExtraError
        Without OpenMM and PDBFixer.
    InvalidFileError
        With no protein atoms, or a structure the force field cannot describe.
    """
    import biotite.structure.io.pdb as biopdb

    from foldatlas.structure.io import to_pdb_string

    openmm, app, unit, pdbfixer = _imports()
    started = time.time()
    protein = _protein_heavy_atoms(atoms)
    before = geometry_report(protein)
    b_factor = dict(zip(_atom_keys(protein), protein.b_factor.astype(float)))
    ca_b = {k[:3]: b for k, b in b_factor.items() if k[3] == "CA"}

    fixer = pdbfixer.PDBFixer(pdbfile=io.StringIO(to_pdb_string(protein)))
    fixer.findMissingResidues()
    fixer.missingResidues = {}  # fill no gaps: only atoms
    fixer.findMissingAtoms()
    fixer.addMissingAtoms()
    fixer.addMissingHydrogens(7.0)
    forcefield = app.ForceField("amber14-all.xml")
    try:
        if options.cutoff:
            system = forcefield.createSystem(fixer.topology, nonbondedMethod=app.CutoffNonPeriodic,
                                             nonbondedCutoff=options.cutoff / 10.0 * unit.nanometer,
                                             constraints=app.HBonds)
        else:
            system = forcefield.createSystem(fixer.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
    except ValueError as e:
        raise InvalidFileError(f"the force field cannot describe this structure ({str(e).splitlines()[0]})") from None
    reference = fixer.positions
    restraint = openmm.CustomExternalForce("0.5 * k * ((x - x0)^2 + (y - y0)^2 + (z - z0)^2)")
    stiffness = options.stiffness * _KCAL * 100.0  # kJ/mol/nm^2
    for name in ("k", "x0", "y0", "z0"):
        restraint.addPerParticleParameter(name)
    heavy = [(a.index, (a.residue.chain.id, int(a.residue.id), a.residue.insertionCode.strip()))
             for a in fixer.topology.atoms() if a.element is not None and a.element.symbol != "H"]
    slots = {}
    for index, residue in heavy:
        slots[index] = restraint.addParticle(index, [stiffness, *reference[index].value_in_unit(unit.nanometer)])
    system.addForce(restraint)
    platform = openmm.Platform.getPlatformByName("CPU")
    properties = {"Threads": str(options.threads)} if options.threads else {}
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform, properties)
    context.setPositions(reference)

    def energy() -> float:
        state = context.getState(getEnergy=True)
        return state.getPotentialEnergy().value_in_unit(unit.kilocalorie_per_mole)

    energy_start = energy()
    released: set[tuple] = set()
    rounds, result = 0, protein
    while rounds < max(1, options.max_rounds):
        rounds += 1
        openmm.LocalEnergyMinimizer.minimize(context, 10.0, options.max_iterations)
        positions = context.getState(getPositions=True).getPositions()
        text = io.StringIO()
        app.PDBFile.writeFile(fixer.topology, positions, text, keepIds=True)
        allatom = biopdb.PDBFile.read(io.StringIO(text.getvalue())).get_structure(model=1, extra_fields=["b_factor"])
        result = allatom[(allatom.element != "H") & (allatom.element != "D")]
        after = geometry_report(result)
        if after.chain_breaks == 0 and after.clashes == 0:
            break
        newly = {k[:3] for k, bad in zip(_atom_keys(result), violating_atoms(result)) if bad} - released
        if not newly:
            break
        released |= newly
        for index, residue in heavy:  # a released residue's atoms: restraint constant 0
            if residue in released:
                restraint.setParticleParameters(slots[index], index,
                                                [0.0, *reference[index].value_in_unit(unit.nanometer)])
        restraint.updateParametersInContext(context)
    energy_end = energy()
    final = allatom if options.keep_hydrogens else result
    keys = _atom_keys(final)
    final.b_factor = np.array([b_factor.get(k, ca_b.get(k[:3], 0.0)) for k in keys], dtype=np.float32)
    before_ca = {k[:3]: x for k, x in zip(_atom_keys(protein), protein.coord) if k[3] == "CA"}
    pairs = [(before_ca[k[:3]], x) for k, x in zip(_atom_keys(result), result.coord)
             if k[3] == "CA" and k[:3] in before_ca]
    rmsd = float(np.sqrt(np.mean([np.sum((a - b) ** 2) for a, b in pairs]))) if pairs else 0.0
    return RelaxResult(atoms=final, before=before, after=after, ca_rmsd=rmsd, rounds=rounds,
                       energy_start=energy_start, energy_end=energy_end, seconds=time.time() - started)


def write_relaxed(result: RelaxResult, path, what: str) -> None:
    """Write the relaxed structure as PDB or mmCIF (by the suffix), atomically, saying what it was relaxed from.

    Parameters
    ----------
    result : RelaxResult
    path : str or Path
    what : str
        The input, in words (a file name, a prediction and its model), for the PDB remarks and the mmCIF
        software record.
    """
    from pathlib import Path

    from foldatlas.files import atomic_write_text
    from foldatlas.structure.io import to_pdb_string
    from foldatlas.structure.modelcif import ModelInfo, modelcif_text

    path = Path(path)
    b, a = result.before, result.after
    if path.suffix.lower() == ".cif":
        info = ModelInfo(name=path.stem, title=f"{what}, relaxed by foldatlas (restrained Amber minimisation)",
                         model="OpenMM Amber ff14SB relaxation", predicted=False)
        atomic_write_text(path, modelcif_text(result.atoms, info))
        return
    remarks = [f"{what}, relaxed by foldatlas (OpenMM, Amber ff14SB, heavy-atom restraints)",
               f"{result.rounds} round(s); C-alpha RMSD to the input {result.ca_rmsd:.2f} A; chain breaks "
               f"{b.chain_breaks} -> {a.chain_breaks}; clashscore {b.clashscore:.1f} -> {a.clashscore:.1f}",
               "B-factor column: as in the input (per-atom pLDDT on the 0-100 scale for predictions)"]
    atomic_write_text(path, to_pdb_string(result.atoms, remarks=remarks))
