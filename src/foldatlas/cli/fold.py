"""``foldatlas fold``: sequences or FASTA files in, structures and confidence out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from foldatlas.models.registry import DEFAULT_FOLD_MODEL


DEFAULT_MODEL_NOTICE = (
    f"note: folding with {DEFAULT_FOLD_MODEL}, the small model foldatlas trains and ships (see its model card); "
    f"Meta's ESMFold is far more accurate: add --model facebook/esmfold_v1 "
    f"(fetch the weights once with: hf download facebook/esmfold_v1)")


# ESMFold2's sampling options, shared by fold and atlas build (ESMFold v1 models refuse them).
NUM_SAMPLES_OPTION = typer.Option(None, "--num-samples", min=1, max=64,  # models.esmfold2.MAX_SAMPLES
                                  help="ESMFold2: diffusion samples per record (default: the checkpoint's own).")
SEED_OPTION = typer.Option(None, "--seed", min=0, max=2**63 - 1,  # engine.MAX_SEED
                           help="ESMFold2: seed of every record's fold (default 0).")
NUM_STEPS_OPTION = typer.Option(None, "--num-steps", min=1, max=1000,  # models.esmfold2.MAX_STEPS
                                help="ESMFold2: diffusion noise-schedule length (default: the checkpoint's own).")
# Precision and dtype, shared by fold and atlas build (see foldatlas.models.precision).
PRECISION_OPTION = typer.Option("auto", "--precision",
                                help="exact (float32 everywhere), fast (bfloat16 matrix products, TF32, fused "
                                     "kernels where the device has them) or auto (exact on CPUs, fast on GPUs).")
DTYPE_OPTION = typer.Option(None, "--dtype", help="Expert override: float32, bfloat16 or float16 for the trunk's "
                                                  "weights (precision 'custom').")
NUM_LOOPS_OPTION = typer.Option(None, "--num-loops", min=0, max=48,  # models.esmfold2.MAX_LOOPS
                                help="ESMFold2: trunk loops (default: the checkpoint's own).")


def print_precision(folding_model, precision: str, dtype: str | None, log=None) -> None:
    """Say on stderr what precision runs when it is not the plain default, and warn of slow CPU 16-bit work."""
    from foldatlas.models.precision import cpu_has_native_bf16

    log = log or (lambda message: print(message, file=sys.stderr))
    chosen = folding_model.precision
    if chosen is not None and (precision != "auto" or dtype or chosen.mode != "exact"):
        log(f"note: {chosen.describe()}")
    if folding_model.device.type == "cpu" and dtype not in (None, "float32"):
        why = ("" if dtype == "bfloat16" and cpu_has_native_bf16() else
               ": this CPU has no native 16-bit arithmetic (about 100x slower matrix products than float32)")
        if why:
            log(f"warning: --dtype {dtype} on this CPU is far slower than float32{why}")


def register(app: typer.Typer) -> None:
    """Add the ``fold`` command to ``app``."""

    @app.command("fold")
    def fold(
        inputs: list[str] = typer.Argument(..., help="FASTA files or raw sequences (':' between complex chains)."),
        output: Path = typer.Option(Path("predictions"), "--output", "-o", help="Output folder (created)."),
        model: str = typer.Option(DEFAULT_FOLD_MODEL, "--model", "-m",
                                  help="Registered name, hub id (local cache) or checkpoint folder."),
        num_recycles: Optional[int] = typer.Option(None, "--num-recycles", min=0, max=24,  # engine.MAX_RECYCLES
                                                   help="ESMFold v1: recycles after the first pass (default: the "
                                                        "model's own)."),
        num_samples: Optional[int] = NUM_SAMPLES_OPTION,
        seed: Optional[int] = SEED_OPTION,
        num_steps: Optional[int] = NUM_STEPS_OPTION,
        num_loops: Optional[int] = NUM_LOOPS_OPTION,
        chunk_size: Optional[int] = typer.Option(None, "--chunk-size", min=0,
                                                 help="Triangle-attention chunk; 0 = none (default: automatic)."),
        max_tokens_per_batch: int = typer.Option(1024, "--max-tokens-per-batch", min=0,
                                                 help="Padded residues per batch; 0 = one record per batch."),
        max_length: Optional[int] = typer.Option(None, "--max-length", min=1,
                                                 help="Skip longer records (default: what fits in memory)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
        precision: str = PRECISION_OPTION,
        dtype: Optional[str] = DTYPE_OPTION,
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for torch."),
        name: str = typer.Option("query", "--name", help="Name of a raw sequence."),
        no_plot: bool = typer.Option(False, "--no-plot", help="Skip the pLDDT/PAE PNG."),
        relax: bool = typer.Option(False, "--relax", help="Also write an Amber-relaxed model per record "
                                                          "(NAME.relaxed.pdb/.cif; needs foldatlas[relax])."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        """Fold proteins: PDB, mmCIF, confidence JSON (pLDDT, pTM, ipTM, PAE, geometry) and a plot per record."""
        from foldatlas.predict.runner import RunConfig, run_fold
        from foldatlas.seq.fasta import read_inputs

        from foldatlas.files import check_output_path
        from foldatlas.models.loading import check_device_options, check_fold_options, load_folding_model

        # Everything is checked before a model loads or the output folder is created.
        records = read_inputs(inputs, default_name=name)
        config = RunConfig(output=output, num_recycles=num_recycles, chunk_size=chunk_size,
                           max_tokens_per_batch=max_tokens_per_batch, max_length=max_length, plot=not no_plot,
                           num_samples=num_samples, seed=seed, num_steps=num_steps, num_loops=num_loops,
                           relax=relax)
        check_output_path(output, "--output", folder=True)
        check_device_options(device, dtype, precision)
        check_fold_options(model, config.fold_options())  # before a model loads or the output folder exists

        folding_model = load_folding_model(model, device=device, dtype=dtype, threads=threads, precision=precision)
        if folding_model.name == DEFAULT_FOLD_MODEL and folding_model.source == "package":
            print(DEFAULT_MODEL_NOTICE, file=sys.stderr)
        if folding_model.precision_note:
            print(f"note: {folding_model.precision_note}", file=sys.stderr)
        print_precision(folding_model, precision, dtype)
        result = run_fold(records, config, folding_model, inputs=list(inputs), progress=not quiet)
        msg = (f"{result.folded} folded, {result.skipped} already done, {result.failed} failed "
               f"-> {output}/ (summary.tsv, manifest.json)")
        print(msg, file=sys.stderr)
        if not result.ok:
            raise typer.Exit(1)
