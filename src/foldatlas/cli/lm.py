"""``foldatlas embed | contacts | variants | unmask``: the language-model tools."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Optional

import typer

from foldatlas.models.registry import DEFAULT_LM

MODEL_OPTION = typer.Option(DEFAULT_LM, "--model", "-m", help="Language model: the embedded one, ESM-2 (esm2_t*, "
                                                              "facebook/esm2_t*) or ESM C (esmc_300m, esmc_600m, "
                                                              "esmc_6b, biohub/ESMC-*) from the local hub cache, or "
                                                              "a folder.")
TOKENS_OPTION = typer.Option(4096, "--max-tokens-per-batch", min=1, help="Padded tokens per forward pass.")


def _bar(total: int, quiet: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="tok", desc=desc, disable=quiet, file=sys.stderr, dynamic_ncols=True)


def _atomic_text(path: Path, text: str) -> None:
    from foldatlas.files import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def _one_record(source: str, name: str):
    from foldatlas.errors import InvalidSequenceError
    from foldatlas.seq.fasta import read_inputs

    records = read_inputs([source], default_name=name)
    if len(records) != 1:
        raise InvalidSequenceError(f"{source}: {len(records)} records; give one wild-type sequence")
    return records[0]


def register(app: typer.Typer) -> None:
    """Add the language-model commands to ``app``."""

    @app.command("embed")
    def embed_cmd(
        inputs: list[str] = typer.Argument(..., help="FASTA files or raw sequences."),
        output: Path = typer.Option(..., "--output", "-o", help="Output file: .npz, .npy or .parquet."),
        model: str = MODEL_OPTION,
        layers: str = typer.Option("-1", "--layers", help="Comma-separated representation layers (0 = token "
                                   "embeddings, -1 = final)."),
        per_residue: bool = typer.Option(False, "--per-residue", help="Keep every residue's vector too."),
        fmt: Optional[str] = typer.Option(None, "--format", help="npz, npy or parquet (default: from the suffix)."),
        max_tokens: int = TOKENS_OPTION,
        threads: Optional[int] = typer.Option(None, "--threads", min=1),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Mean (and per-residue) representations of proteins from chosen layers."""
        from foldatlas.errors import InvalidOptionError
        from foldatlas.files import check_output_path
        from foldatlas.lm import embed, load_lm, write_embeddings
        from foldatlas.lm.embed import check_embedding_output, embedding_tokens
        from foldatlas.seq.fasta import read_inputs

        records = read_inputs(inputs)
        try:
            wanted = tuple(int(x) for x in layers.split(",") if x.strip())
        except ValueError:
            raise InvalidOptionError(f"--layers '{layers}': give integers like -1 or 0,6,-1") from None
        if not wanted:
            raise InvalidOptionError(f"--layers '{layers}': give at least one layer, like -1 or 0,6,-1")
        fmt = check_embedding_output(output, fmt, wanted, per_residue)  # before the model loads
        check_output_path(output, "--output")
        lm = load_lm(model, threads)
        for k in wanted:
            lm.layer_index(k)
        with _bar(embedding_tokens(records), quiet, "embedding") as bar:
            results = embed(lm, records, wanted, per_residue, max_tokens, progress=bar.update)
        path = write_embeddings(results, output, fmt)
        typer.echo(f"{len(results)} records, layers {sorted(results[0].mean)}, dim {lm.dim} -> {path}", err=True)

    @app.command("contacts")
    def contacts_cmd(
        inputs: list[str] = typer.Argument(..., help="FASTA files or raw sequences (single chains)."),
        output: Path = typer.Option(Path("contacts"), "--output", "-o", help="Output folder."),
        model: str = MODEL_OPTION,
        png: bool = typer.Option(True, "--png/--no-png", help="Write a PNG of each map."),
        max_tokens: int = TOKENS_OPTION,
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Contact probability maps from the model's attention: <name>.contacts.npy, .tsv (top-L pairs) and .png.

        Needs a model with a contact head (ESM-2; not ESM C)."""
        import numpy as np

        from foldatlas.files import check_output_path
        from foldatlas.lm import load_lm, predict_contacts, top_contacts
        from foldatlas.lm.model import single_chain
        from foldatlas.lm.plots import contact_png
        from foldatlas.seq.fasta import read_inputs
        from foldatlas.seq.records import safe_names

        from foldatlas.models.language import language_family

        records = read_inputs(inputs)
        for record in records:  # one chain each, within the model's context: checked before the model loads
            single_chain(record, "contact prediction")
        check_output_path(output, "--output", folder=True)
        language_family(model)[0].check_contact_head(model)  # from config.json: no weights loaded for a refusal
        lm = load_lm(model)
        with _bar(sum(r.length + 2 for r in records), quiet, "contacts") as bar:
            maps = predict_contacts(lm, records, max_tokens, progress=bar.update)
        output.mkdir(parents=True, exist_ok=True)
        for rec, stem, probs in zip(records, safe_names([r.name for r in records]), maps):
            tmp = output / f".{stem}.contacts.npy.tmp"
            with open(tmp, "wb") as f:
                np.save(f, probs)
            tmp.replace(output / f"{stem}.contacts.npy")
            lines = ["i\tj\tprobability"] + [f"{i}\t{j}\t{p:.4f}" for i, j, p in top_contacts(probs)]
            _atomic_text(output / f"{stem}.contacts.tsv", "\n".join(lines) + "\n")
            if png:
                contact_png(probs, output / f"{stem}.contacts.png", title=f"{rec.name} ({lm.name})")
        typer.echo(f"{len(records)} contact maps -> {output}/", err=True)

    @app.command("variants")
    def variants_cmd(
        sequence: str = typer.Argument(..., help="The wild type: a raw sequence or a FASTA file with one record."),
        mutations: Optional[str] = typer.Option(None, "--mutations", help="Comma-separated variants: A42G or "
                                                "A42G:B43C."),
        mutations_file: Optional[Path] = typer.Option(None, "--mutations-file", help="Variants, one per line, or a "
                                                      "CSV/TSV whose first column (or 'mutant' column) holds them."),
        scan: bool = typer.Option(False, "--scan", help="Every single substitution (19 per position)."),
        offset: int = typer.Option(1, "--offset", help="Number of the sequence's first residue in the notation."),
        methods: str = typer.Option("masked_marginal,wt_marginal", "--methods", help="Comma-separated: "
                                    "masked_marginal, wt_marginal, pll (pll costs L forward passes per variant)."),
        output: Path = typer.Option(Path("variants.csv"), "--output", "-o", help="CSV of scores."),
        heatmap: Optional[Path] = typer.Option(None, "--heatmap", help="PNG heatmap of the single substitutions."),
        model: str = MODEL_OPTION,
        max_tokens: int = TOKENS_OPTION,
        structure: Optional[str] = typer.Option(None, "--structure", help="A structure of the protein (PDB or "
                                                "mmCIF): adds ProteinMPNN's structure-conditioned score (column "
                                                "proteinmpnn)."),
        chain: Optional[str] = typer.Option(None, "--chain", help="The structure's chain of the protein (default: "
                                            "the best match)."),
        design_model: str = typer.Option("proteinmpnn", "--design-model", help="ProteinMPNN model for "
                                         "--structure: proteinmpnn or soluble."),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Zero-shot variant effect scores (ESM-1v's masked marginal, wild-type marginal, pseudo-log-likelihood;
        with --structure also ProteinMPNN's)."""
        from foldatlas.errors import InvalidOptionError
        from foldatlas.lm import load_lm, parse_variants, score_variants, single_scan
        from foldatlas.lm.model import single_chain
        from foldatlas.lm.plots import scan_heatmap_png
        from foldatlas.lm.variants import check_methods, variant_tokens

        from foldatlas.files import check_output_path

        record = _one_record(sequence, "wild_type")
        wt = single_chain(record, "variant scoring", max_residues=None)  # longer than the context: windows
        check_output_path(output, "--output")
        if heatmap is not None:
            check_output_path(heatmap, "--heatmap", suffixes=(".png",))
        items: list[str] = []
        if mutations:
            items += [m for m in mutations.split(",") if m.strip()]
        if mutations_file:
            items += _read_mutations(mutations_file)
        if not items and not scan:
            raise InvalidOptionError("give --mutations, --mutations-file or --scan")
        variants = parse_variants(items, wt, offset) if items else []
        if scan:
            variants += single_scan(wt, offset)
        chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
        check_methods(chosen)
        atoms = None
        if structure is not None:
            from foldatlas.atlas.structsearch import structure_of

            atoms, _ = structure_of(structure)
        lm = load_lm(model)
        with _bar(variant_tokens(wt, variants, chosen), quiet, "scoring") as bar:
            rows = score_variants(lm, wt, variants, chosen, max_tokens, progress=bar.update)
        if atoms is not None:
            from foldatlas.design.variants import structure_variant_scores

            for row, value in zip(rows, structure_variant_scores(atoms, wt, variants, chain, design_model)):
                row["proteinmpnn"] = "" if value is None else value
            chosen = (*chosen, "proteinmpnn")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["mutant", "n_mutations", *chosen], lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.5f}" if isinstance(v, float) else v) for k, v in row.items()})
        _atomic_text(output, buf.getvalue())
        if heatmap is not None:
            scan_heatmap_png(rows, wt, offset, chosen[0], heatmap)
        typer.echo(f"{len(rows)} variants scored ({', '.join(chosen)}) -> {output}", err=True)

    @app.command("unmask")
    def unmask_cmd(
        sequence: str = typer.Argument(..., help="A sequence with <mask> or _ at the positions to fill."),
        top_k: int = typer.Option(5, "--top-k", min=1, max=20),
        model: str = MODEL_OPTION,
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Predict masked residues: the top-k amino acids and their probabilities at each mask."""
        from foldatlas.lm import load_lm, unmask

        result = unmask(load_lm(model), sequence, top_k)
        if as_json:
            typer.echo(json.dumps(result, indent=1))
            return
        typer.echo(result["sequence"])
        for pos in result["positions"]:
            cands = "  ".join(f"{c['residue']} {c['probability']:.3f}" for c in pos["candidates"])
            typer.echo(f"{pos['position']:>6}  {cands}")


def _read_mutations(path: Path) -> list[str]:
    from foldatlas.errors import InvalidFileError

    try:
        text = path.read_text()
    except OSError as e:
        raise InvalidFileError(f"{path}: {e.strerror or e}") from None
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        raise InvalidFileError(f"{path}: no variants")
    delimiter = "\t" if "\t" in lines[0] else ("," if "," in lines[0] else None)
    if delimiter is None:
        return [line.strip() for line in lines]
    import re

    rows = list(csv.reader(lines, delimiter=delimiter))
    header = [h.strip().lower() for h in rows[0]]
    column = header.index("mutant") if "mutant" in header else 0
    looks_like = re.compile(r"^[A-Za-z]-?\d+[A-Za-z](:[A-Za-z]-?\d+[A-Za-z])*$")
    body = rows[1:] if not looks_like.match(rows[0][column].strip()) else rows  # a header row is skipped
    return [r[column].strip() for r in body if len(r) > column and r[column].strip()]
