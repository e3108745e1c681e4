"""``foldatlas compare``: score a model against a reference structure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the ``compare`` command to ``app``."""

    @app.command("compare")
    def compare(
        model: Path = typer.Argument(..., help="Model structure (PDB or mmCIF, gzipped too)."),
        reference: Path = typer.Argument(..., help="Reference structure."),
        model_chain: Optional[str] = typer.Option(None, "--model-chain", help="Chain ids to keep, e.g. A or A,B."),
        reference_chain: Optional[str] = typer.Option(None, "--reference-chain", help="Chain ids to keep."),
        superposed: Optional[Path] = typer.Option(None, "--superposed",
                                                  help="Write the model superposed on the reference (.pdb or .cif)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """TM-score (TM-align, by reference length), RMSD, GDT-TS, lDDT-Cα and aligned length."""
        from foldatlas.structure.compare import compare_files

        if superposed is not None:
            from foldatlas.files import check_output_path

            check_output_path(superposed, "--superposed", suffixes=(".pdb", ".cif"))
        result = compare_files(model, reference, model_chains=model_chain, reference_chains=reference_chain,
                               superposed_path=superposed)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
            return
        for key, value in result.to_dict().items():
            typer.echo(f"{key:<18}{value:.4f}" if isinstance(value, float) else f"{key:<18}{value}")
