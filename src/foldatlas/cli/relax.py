"""``foldatlas relax``: restrained Amber minimisation of any PDB/mmCIF model (OpenMM)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the ``relax`` command to ``app``."""

    @app.command("relax")
    def relax(
        structure: Path = typer.Argument(..., help="Model to relax (PDB or mmCIF, gzipped too)."),
        output: Path = typer.Option(..., "--output", "-o", help="Relaxed model (.pdb or .cif)."),
        rounds: int = typer.Option(3, "--rounds", min=1, max=20,
                                   help="Minimisations at most; residues still at a break or clash are released."),
        stiffness: float = typer.Option(10.0, "--stiffness", min=0.0, help="Heavy-atom restraint, kcal/mol/A^2."),
        keep_hydrogens: bool = typer.Option(False, "--keep-hydrogens", help="Keep the hydrogens added."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for OpenMM."),
        cutoff: Optional[float] = typer.Option(None, "--cutoff", min=6.0, help="Non-bonded cut-off in A (default: "
                                                                               "none, as AlphaFold; 10 is faster)."),
        as_json: bool = typer.Option(False, "--json", help="Print the before/after report as JSON."),
    ) -> None:
        """Relax a model as AlphaFold does: Amber ff14SB, restrained heavy atoms, until no breaks or clashes remain."""
        from foldatlas.files import check_output_path
        from foldatlas.structure.io import read_structure
        from foldatlas.structure.relax import RelaxOptions, relax_structure, write_relaxed

        check_output_path(output, "--output", suffixes=(".pdb", ".cif"))
        atoms = read_structure(structure)
        result = relax_structure(atoms, RelaxOptions(stiffness=stiffness, max_rounds=rounds,
                                                     keep_hydrogens=keep_hydrogens, threads=threads,
                                                     cutoff=cutoff))
        write_relaxed(result, output, structure.name)
        report = result.to_dict()
        if as_json:
            typer.echo(json.dumps(report, indent=2))
            return
        b, a = result.before, result.after
        typer.echo(f"{'':<16}{'before':>10}{'after':>10}")
        for label, x, y in (("chain breaks", b.chain_breaks, a.chain_breaks), ("clashscore", b.clashscore,
                                                                                a.clashscore),
                            ("bond outliers", b.bond_outliers, a.bond_outliers),
                            ("angle outliers", b.angle_outliers, a.angle_outliers)):
            typer.echo(f"{label:<16}{x:>10}{y:>10}")
        typer.echo(f"C-alpha RMSD to the input {result.ca_rmsd:.2f} A, {result.rounds} round(s), "
                   f"{result.seconds:.1f} s -> {output}")
