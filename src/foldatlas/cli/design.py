"""``foldatlas design``: sequences for a backbone with ProteinMPNN, or the log-likelihood of given sequences."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def _bias(text: Optional[str]) -> dict:
    from foldatlas.errors import InvalidOptionError

    out: dict = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        aa, _, value = item.partition(":")
        try:
            out[aa.strip().upper()] = out.get(aa.strip().upper(), 0.0) + float(value)
        except ValueError:
            raise InvalidOptionError(f"--bias: {item!r} is not AMINO:VALUE (like A:-1.0,W:0.5)") from None
    return out


def register(app: typer.Typer) -> None:
    """Add the ``design`` command to ``app``."""

    @app.command("design")
    def design(
        source: str = typer.Argument(..., help="Structure file (PDB or mmCIF, gzipped too), or an entry ID of "
                                               "--atlas."),
        atlas: Optional[Path] = typer.Option(None, "--atlas", help="Atlas folder holding the entry."),
        chains: Optional[str] = typer.Option(None, "--chains", help="Chains to design, e.g. A or A,B (default: "
                                                                    "all); the others are kept as context."),
        fixed: Optional[str] = typer.Option(None, "--fixed", help="Residues to keep, e.g. A10-25,B3."),
        num_sequences: int = typer.Option(8, "--num-sequences", "-n", help="Designs to sample."),
        temperature: float = typer.Option(0.1, "--temperature", "-t", help="Sampling temperature."),
        seed: int = typer.Option(0, "--seed", help="Random seed (same seed and batch size: same designs)."),
        batch_size: int = typer.Option(8, "--batch-size", help="Designs decoded together."),
        model: str = typer.Option("proteinmpnn", "--model", help="proteinmpnn, soluble, or a checkpoint folder."),
        omit: str = typer.Option("", "--omit", help="Amino acids never sampled, e.g. C."),
        bias: Optional[str] = typer.Option(None, "--bias", help="Logit bias per amino acid, e.g. A:-1.0,W:0.5."),
        tied: Optional[str] = typer.Option(None, "--tied", help="Positions sharing one amino acid: A10,B10|A11,B11."),
        homo_oligomer: bool = typer.Option(False, "--homo-oligomer", help="Tie every residue to the same residue "
                                                                          "of the other chains."),
        score: Optional[list[str]] = typer.Option(None, "--score", help="Score this sequence on the structure "
                                                                        "instead of designing (repeatable)."),
        refold: Optional[str] = typer.Option(None, "--refold", help="Fold every design (and the input's "
                                                                    "sequence) with this folding model and report "
                                                                    "scTM, RMSD, pLDDT and pTM, best first."),
        refold_dir: Optional[Path] = typer.Option(None, "--refold-dir", help="With --refold: write each refolded "
                                                                             "model here as PDB, superposed on the "
                                                                             "target."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write FASTA (or JSON with --json) "
                                                                           "here instead of printing it."),
        as_json: bool = typer.Option(False, "--json", help="JSON instead of FASTA."),
    ) -> None:
        """Design sequences for a structure with ProteinMPNN (FASTA with each design's score and recovery)."""
        from foldatlas.atlas.structsearch import structure_of
        from foldatlas.design.mpnn import DesignOptions, design_sequences, score_sequences
        from foldatlas.files import atomic_write_text, check_output_path

        from foldatlas.errors import InvalidOptionError

        if output is not None:
            check_output_path(output, "--output")
        if refold_dir is not None:
            if refold is None:
                raise InvalidOptionError("--refold-dir needs --refold MODEL")
            check_output_path(refold_dir, "--refold-dir", folder=True)
        if refold is not None and score:
            raise InvalidOptionError("--refold designs and folds them; it does not apply to --score")
        options = DesignOptions(num_sequences=num_sequences, temperature=temperature, seed=seed,
                                batch_size=batch_size, omit=omit, bias=_bias(bias), tied=tied,
                                homo_oligomer=homo_oligomer, model=model, fixed=fixed,
                                chains=tuple(c.strip() for c in chains.split(",") if c.strip()) if chains else None)
        if atlas is not None:
            from foldatlas.atlas import open_atlas

            with open_atlas(atlas, readonly=True) as store:
                atoms, name = structure_of(source, store)
        else:
            atoms, name = structure_of(source)
        if score:
            results = score_sequences(atoms, list(score), model=model, seed=seed)
            if as_json:
                text = json.dumps([r.to_dict() for r in results], indent=1) + "\n"
            else:
                text = "".join(f"{name}\ttotal={r.total:.4f}\tmean={r.mean:.4f}\t{r.sequence}\n" for r in results)
        else:
            result = design_sequences(atoms, options, name=name)
            text = json.dumps(result.to_dict(), indent=1) + "\n" if as_json else result.to_fasta()
            if refold is not None:
                text = _refold(result, atoms, refold, refold_dir, as_json)
        if output is not None:
            atomic_write_text(output, text)
        else:
            typer.echo(text, nl=False)


def _refold(result, atoms, model: str, folder: Optional[Path], as_json: bool) -> str:
    """Refold the designs: FASTA with scTM, RMSD, pLDDT and pTM in each header (a ranked table on stderr), or JSON
    with a ``refolded`` list."""
    from foldatlas.design.refold import refold_designs
    from foldatlas.files import atomic_write_text

    def write(index: int, prediction, superposed) -> None:  # the model moved onto the target, pLDDT kept
        from foldatlas.structure.io import to_pdb_string

        label = "native" if index == 0 else f"design_{index}"
        atomic_write_text(folder / f"{result.name}_{label}.pdb", to_pdb_string(superposed))

    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    rows = refold_designs(result, atoms, model, keep=write if folder is not None else None)
    if as_json:
        data = result.to_dict()
        data["refolded"] = {"model": model, "designs": [r.to_dict() for r in rows]}
        return json.dumps(data, indent=1) + "\n"
    typer.echo(f"refolded with {model}, best scTM first (0: the input's own sequence)\n"
               "index\tscTM\tRMSD\tpLDDT\tpTM", err=True)
    for r in rows:
        typer.echo(f"{r.index}\t{r.sc_tm:.3f}\t{r.rmsd:.2f}\t{r.plddt:.1f}\t{r.ptm:.3f}", err=True)
    return result.to_fasta({r.index: f"sc_tm={r.sc_tm:.4f} rmsd={r.rmsd:.3f} plddt={r.plddt:.2f} ptm={r.ptm:.4f}"
                            for r in rows})
