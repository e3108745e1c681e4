"""``foldatlas train``: training data and the project's own models."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

train_app = typer.Typer(no_args_is_help=True, help="Build training data and train the embedded models.")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@train_app.command("data")
def data(
    out: Path = typer.Option(..., "--out", "-o", help="Data folder (created; raw dumps cached in OUT/raw)."),
    eval_fasta: Optional[Path] = typer.Option(None, "--exclude", help="FASTA of evaluation domains whose "
                                              "homologs are kept out of every training set."),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(2, "--threads", min=1),
    no_install: bool = typer.Option(False, "--no-install", help="Do not apt-get install missing packages."),
) -> None:
    """Extract UniProt (metastudent-data) and PDB chains (promod3-data); split by 30% identity clusters."""
    from foldatlas.errors import InvalidFileError
    from foldatlas.train.data import SplitOptions, extract_training_data

    if eval_fasta is not None and not eval_fasta.is_file():
        raise InvalidFileError(f"{eval_fasta}: no such file")
    extract_training_data(out, eval_fasta, SplitOptions(seed=seed, threads=threads), install=not no_install,
                          log=_log)


@train_app.command("lm")
def lm(
    data_dir: Path = typer.Option(..., "--data", help="Folder written by 'foldatlas train data'."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (rerun the same command to resume)."),
    steps: int = typer.Option(3000, "--steps", min=1),
    layers: int = typer.Option(6, "--layers", min=1),
    hidden: int = typer.Option(256, "--hidden", min=8),
    heads: int = typer.Option(16, "--heads", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    crop: int = typer.Option(256, "--crop", min=8),
    lr: float = typer.Option(2e-3, "--lr"),
    profile_weight: float = typer.Option(0.5, "--profile-weight", min=0.0,
                                         help="Weight of the sequence-profile auxiliary loss (0 = plain MLM)."),
    seed: int = typer.Option(0, "--seed"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", min=1),
    eval_every: int = typer.Option(250, "--eval-every", min=1),
) -> None:
    """Masked-LM training of an ESM-2-architecture model (resumable, seeded)."""
    from foldatlas.errors import InvalidFileError, InvalidOptionError
    from foldatlas.train.lm import LMTrainConfig, train_lm

    for name in ("lm_train.fasta", "lm_valid.fasta"):
        if not (data_dir / name).is_file():
            raise InvalidFileError(f"{data_dir}: no {name} (run 'foldatlas train data' first)")
    if hidden % heads:
        raise InvalidOptionError(f"--hidden {hidden} is not a multiple of --heads {heads}")
    cfg = LMTrainConfig(layers=layers, hidden=hidden, heads=heads, ffn=4 * hidden, crop=crop, batch_size=batch_size,
                        steps=steps, lr=lr, warmup=max(1, min(150, steps // 10)), profile_weight=profile_weight,
                        seed=seed, threads=threads, checkpoint_every=checkpoint_every, eval_every=eval_every)
    final = train_lm(data_dir, out, cfg, log=_log)
    _log(f"model written to {final}")


@train_app.command("lm-eval")
def lm_eval(
    model: str = typer.Option(..., "--model", "-m", help="LM name, hub id or folder."),
    data_dir: Path = typer.Option(..., "--data", help="Folder written by 'foldatlas train data'."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the metrics JSON here."),
    fit_contacts: bool = typer.Option(False, "--fit-contacts",
                                      help="Fit the contact regression on training chains and store it in the "
                                           "model folder (the ESM-2 recipe)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
) -> None:
    """Validation perplexity vs unigram, and top-L long-range contact precision vs random."""
    import json

    from foldatlas.files import atomic_write_text
    from foldatlas.train.lm_eval import evaluate_lm

    metrics = evaluate_lm(model, data_dir, fit_contacts=fit_contacts, threads=threads, log=_log)
    text = json.dumps(metrics, indent=2)
    if out:
        atomic_write_text(out, text)
    typer.echo(text)


@train_app.command("fold")
def fold(
    data_dir: Path = typer.Option(..., "--data", help="Folder written by 'foldatlas train data'."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (rerun the same command to resume)."),
    lm: str = typer.Option("foldatlas-lm-small", "--lm", help="Language model under the trunk (frozen)."),
    steps: int = typer.Option(4000, "--steps", min=1),
    blocks: int = typer.Option(4, "--blocks", min=1, help="Folding-trunk blocks."),
    sequence_dim: int = typer.Option(256, "--sequence-dim", min=8, help="Trunk sequence-state width."),
    pairwise_dim: int = typer.Option(64, "--pairwise-dim", min=8, help="Trunk pair-state width."),
    eval_chains: int = typer.Option(40, "--eval-chains", min=1, help="Validation chains scored every 250 steps."),
    crop: int = typer.Option(128, "--crop", min=16),
    min_length: int = typer.Option(40, "--min-length", min=1,
                                   help="Train on chains at least this long (with --crop: whole windows of long "
                                        "chains)."),
    batch_size: int = typer.Option(2, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr"),
    max_recycles: int = typer.Option(3, "--max-recycles", min=0),
    seed: int = typer.Option(0, "--seed"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
    until: Optional[int] = typer.Option(None, "--until", min=1, help="Stop at this step (resume later)."),
    violation: float = typer.Option(0.0, "--violation", min=0.0,
                                    help="Weight of AlphaFold's violation losses (peptide bonds, angles, clashes)."),
    init: Optional[str] = typer.Option(None, "--init", help="Fine-tune this folding model (name or folder) "
                                                            "instead of training a new one."),
    device: str = typer.Option("cpu", "--device", help="Torch device, e.g. cuda."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", min=0.0,
                                               help="Stop with a checkpoint after this many seconds (resume later)."),
    violation_clash: float = typer.Option(1.0, "--violation-clash", min=0.0,
                                          help="Share of the all-atom clash term within the violation losses."),
    violation_bond: float = typer.Option(1.0, "--violation-bond", min=0.0,
                                         help="Scale of their peptide C-N length term (AlphaFold: 1)."),
    violation_bond_tolerance: float = typer.Option(12.0, "--violation-bond-tolerance", min=0.0,
                                                   help="Flat bottom of the violation losses' peptide C-N length "
                                                        "term, in standard deviations (AlphaFold: 12)."),
    violation_angle_tolerance: float = typer.Option(12.0, "--violation-angle-tolerance", min=0.0,
                                                    help="Flat bottom of their CA-C-N and C-N-CA angle terms, in "
                                                         "standard deviations (AlphaFold: 12)."),
    violation_clash_overlap: float = typer.Option(1.5, "--violation-clash-overlap", min=0.0,
                                                  help="Van der Waals overlap (A) their clash term allows "
                                                       "(AlphaFold: 1.5; the clashscore counts from 0.4)."),
    unclamped_fape: float = typer.Option(0.1, "--unclamped-fape", min=0.0, max=1.0,
                                         help="Share of unclamped FAPE in the FAPE loss."),
    structure_module_only: bool = typer.Option(False, "--structure-module-only",
                                               help="Fine-tune only the structure module and pLDDT head of --init, "
                                                    "on trunk outputs computed once (CPU-affordable)."),
    cached_crops: int = typer.Option(1600, "--cached-crops", min=1,
                                     help="With --structure-module-only: training crops folded once and kept."),
    long_crop: int = typer.Option(0, "--long-crop", min=0,
                                  help="With --structure-module-only: also keep crops of this many residues from "
                                       "chains at least this long, and train on them every --long-every steps."),
    long_cached_crops: int = typer.Option(240, "--long-cached-crops", min=1,
                                          help="With --long-crop: long crops folded once and kept."),
    long_every: int = typer.Option(2, "--long-every", min=1,
                                   help="With --long-crop: every this-many-th step is a batch of long crops."),
    warmup: int = typer.Option(100, "--warmup", min=0, help="Warm-up steps of the learning rate."),
    eval_every: int = typer.Option(250, "--eval-every", min=1, help="Validate every this many steps."),
    dropout: bool = typer.Option(True, "--dropout/--no-dropout",
                                 help="Train with the model's dropout layers on (off: as inference runs it; "
                                      "--structure-module-only always trains without)."),
) -> None:
    """Train an ESMFold-architecture model on the training structures (resumable, seeded)."""
    from foldatlas.errors import InvalidFileError, InvalidOptionError
    from foldatlas.train.fold import FoldTrainConfig, train_fold
    from foldatlas.train.fold_sm import train_structure_module

    if not (data_dir / "structures_train.npz").is_file():
        raise InvalidFileError(f"{data_dir}: no structures_train.npz (run 'foldatlas train data' first)")
    if structure_module_only and not init:
        raise InvalidOptionError("--structure-module-only fine-tunes a trained model: give --init")
    if long_crop and not structure_module_only:
        raise InvalidOptionError("--long-crop trains on kept trunk outputs: give --structure-module-only")
    cfg = FoldTrainConfig(lm=lm, blocks=blocks, sequence_dim=sequence_dim, pairwise_dim=pairwise_dim,
                          eval_chains=eval_chains, crop=crop, min_length=min_length, batch_size=batch_size,
                          steps=steps, lr=lr, max_recycles=max_recycles, seed=seed, threads=threads,
                          violation=violation, init=init, device=device, time_limit=time_limit,
                          violation_clash=violation_clash, violation_bond=violation_bond,
                          violation_bond_tolerance=violation_bond_tolerance,
                          violation_angle_tolerance=violation_angle_tolerance, unclamped_fape=unclamped_fape,
                          violation_clash_overlap=violation_clash_overlap,
                          warmup=warmup, eval_every=eval_every, dropout=dropout, long_crop=long_crop,
                          long_every=long_every)
    try:
        if structure_module_only:
            final = train_structure_module(data_dir, out, cfg, crops=cached_crops, log=_log, until=until,
                                           long_crops=long_cached_crops)
        else:
            final = train_fold(data_dir, out, cfg, log=_log, until=until)
    except ValueError as exc:
        raise InvalidOptionError(str(exc)) from None
    _log(f"model written to {final}" if final else "stopped before the last step; rerun to resume")


@train_app.command("pack")
def pack(
    data_dir: Path = typer.Option(..., "--data", help="Folder written by 'foldatlas train data'."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the packed structures_{train,valid}.npz."),
    window: int = typer.Option(128, "--window", min=16, help="Residues kept per training chain (a random window)."),
    max_chains: Optional[int] = typer.Option(None, "--max-chains", min=1, help="Training chains kept (a sample)."),
    valid_chains: int = typer.Option(40, "--valid-chains", min=1, help="Validation chains kept (the first N)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write a compact copy of the training set (0.01 A backbones), e.g. to train on another machine."""
    from foldatlas.errors import InvalidFileError
    from foldatlas.train.data import load_structures, pack_structures, training_windows

    for name in ("structures_train.npz", "structures_valid.npz"):
        if not (data_dir / name).is_file():
            raise InvalidFileError(f"{data_dir}: no {name} (run 'foldatlas train data' first)")
    out.mkdir(parents=True, exist_ok=True)
    train = training_windows(load_structures(data_dir / "structures_train.npz"), window, max_chains, seed=seed)
    size = pack_structures(train, out / "structures_train.npz")
    valid = load_structures(data_dir / "structures_valid.npz")
    vsize = pack_structures(valid.subset(list(range(min(valid_chains, len(valid))))), out / "structures_valid.npz")
    _log(f"{len(train)} training chains, {len(train.sequence):,} residues: {size / 1e6:.1f} MB; "
         f"validation {vsize / 1e6:.1f} MB")


def _means_json(metrics: dict) -> str:
    """The evaluation's means per set and scorer (the rows stay in the full JSON)."""
    import json

    return json.dumps({k: {v: r["mean"] for v, r in m.items()} if isinstance(m, dict) else m
                       for k, m in metrics.items()}, indent=2)


@train_app.command("fold-eval")
def fold_eval(
    model: str = typer.Option(..., "--model", "-m", help="Folding model (name, hub id or folder)."),
    data_dir: Optional[Path] = typer.Option(None, "--data", help="Score the test split of this data folder."),
    eval_dir: Optional[Path] = typer.Option(None, "--eval", help="Score the domains of this folder "
                                            "(targets.tsv + structure files), e.g. ../shared/eval/structure."),
    test_chains: Optional[int] = typer.Option(None, "--test-chains", min=1, help="Score the first N test chains."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the metrics JSON here."),
    untrained: bool = typer.Option(True, "--untrained/--no-untrained", help="Also score the untrained twin "
                                                                            "(doubles the time)."),
    previous: Optional[Path] = typer.Option(None, "--previous", help="Metrics JSON of another model with per-chain "
                                                                     "rows (fold-eval -o, fold-release --previous): "
                                                                     "print the paired differences against it."),
) -> None:
    """TM-score, lDDT-Ca, pLDDT calibration and SS agreement, next to a helix and the untrained model."""
    import json

    from foldatlas.errors import InvalidOptionError
    from foldatlas.files import atomic_write_text
    from foldatlas.train.fold_eval import evaluate_fold
    from foldatlas.train.release import paired_line

    if data_dir is None and eval_dir is None:
        raise InvalidOptionError("nothing to score: give --data and/or --eval")
    before = _read_previous(previous) if previous is not None else None
    metrics = evaluate_fold(model, data_dir, eval_dir, test_chains=test_chains, log=_log, untrained=untrained)
    text = json.dumps(metrics, indent=2)
    if out:
        atomic_write_text(out, text)
    typer.echo(_means_json(metrics))
    if before is not None:
        _log(paired_line(before, metrics) or f"{previous}: no per-chain rows for the chains scored here")


def _read_previous(path: Path) -> dict:
    """A previous model's metrics JSON (an object), or one clear error."""
    import json

    from foldatlas.errors import InvalidFileError

    if not path.is_file():
        raise InvalidFileError(f"{path}: no such file")
    try:
        before = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidFileError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(before, dict):
        raise InvalidFileError(f"{path}: not a JSON object of a model's metrics")
    return before


@train_app.command("fold-heads")
def fold_heads(
    model: str = typer.Option("foldatlas-fold-small", "--model", "-m", help="Folding model (name, hub id or folder)."),
    data_dir: Path = typer.Option(..., "--data", help="Folder written by 'foldatlas train data'."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder for the refitted model (for 'fold-release')."),
    train_chains: int = typer.Option(1500, "--train-chains", min=10, help="Training chains folded to fit on."),
    valid_chains: int = typer.Option(300, "--valid-chains", min=3, help="Validation chains (choose the epoch)."),
    max_length: int = typer.Option(300, "--max-length", min=40, help="Longest chain folded."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    seed: int = typer.Option(0, "--seed"),
    training_run: Optional[Path] = typer.Option(None, "--training-run", help="Run folder the model's trunk came "
                                                "from: its config.json and log.jsonl are copied for 'fold-release'."),
) -> None:
    """Refit the pLDDT head on the model's own predictions (trunk frozen: structures unchanged)."""
    import json

    from foldatlas.errors import InvalidFileError
    from foldatlas.train.fold_heads import refit_lddt_head

    for split in ("train", "valid"):
        if not (data_dir / f"structures_{split}.npz").is_file():
            raise InvalidFileError(f"{data_dir}: no structures_{split}.npz (run 'foldatlas train data' first)")
    if training_run is not None and not all((training_run / f).is_file() for f in ("config.json", "log.jsonl")):
        raise InvalidFileError(f"{training_run}: no config.json and log.jsonl of a 'foldatlas train fold' run")
    summary = refit_lddt_head(model, data_dir, out, train_chains=train_chains, valid_chains=valid_chains,
                              max_length=max_length, epochs=epochs, seed=seed, training_run=training_run, log=_log)
    typer.echo(json.dumps({k: summary[k] for k in ("before", "after", "epoch", "seconds")}, indent=2))


@train_app.command("fold-average")
def fold_average(
    runs: list[str] = typer.Argument(..., metavar="RUN[=WEIGHT]...",
                                     help="Run folders of 'foldatlas train fold' fine-tuned from one model, each "
                                          "with its weight (default 1)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder for the averaged model (for 'fold-release')."),
) -> None:
    """Average the weights of fine-tunings of one folding model (a model soup), for 'fold-release'."""
    import json

    from foldatlas.errors import InvalidOptionError
    from foldatlas.train.average import average_fold_runs

    pairs = []
    for arg in runs:
        path, _, weight = arg.rpartition("=") if "=" in arg else (arg, "", "1")
        try:
            pairs.append((Path(path), float(weight)))
        except ValueError:
            raise InvalidOptionError(f"{arg}: the weight after '=' is not a number") from None
    summary = average_fold_runs(pairs, out)
    typer.echo(json.dumps({k: summary[k] for k in ("tensors", "tensors_differing", "seconds")}
                          | {"weights": {r["run"]: r["weight"] for r in summary["runs"]}}, indent=2))


@train_app.command("lm-release")
def lm_release(
    run: Path = typer.Option(..., "--run", help="Run folder of 'foldatlas train lm'."),
    data_dir: Path = typer.Option(..., "--data", help="Folder written by 'foldatlas train data'."),
    dest: Path = typer.Option(..., "--dest", help="Release folder, e.g. src/foldatlas/weights/foldatlas-lm-small."),
    machine: str = typer.Option("a 2-core x86-64 CPU", "--machine", help="Where it was trained (for the card)."),
) -> None:
    """Store a trained LM as float16 with its contact head fitted, metrics and model card."""
    import json

    from foldatlas.errors import InvalidFileError
    from foldatlas.train.release import release_lm

    if not (run / "model" / "config.json").is_file():
        raise InvalidFileError(f"{run}: no finished model (run 'foldatlas train lm' to the end first)")
    typer.echo(json.dumps(release_lm(run, data_dir, dest, machine, log=_log), indent=2))


@train_app.command("fold-release")
def fold_release(
    run: Path = typer.Option(..., "--run", help="Run folder of 'foldatlas train fold'."),
    data_dir: Path = typer.Option(..., "--data", help="Folder written by 'foldatlas train data' (test split)."),
    eval_dir: Path = typer.Option(..., "--eval", help="Evaluation domains, e.g. ../shared/eval/structure."),
    dest: Path = typer.Option(..., "--dest", help="Release folder, e.g. src/foldatlas/weights/foldatlas-fold-small."),
    test_chains: Optional[int] = typer.Option(None, "--test-chains", min=1, help="Score the first N test chains."),
    machine: str = typer.Option("a 2-core x86-64 CPU", "--machine", help="Where it was trained (for the card)."),
    previous: Optional[Path] = typer.Option(None, "--previous", help="JSON of the model a fine-tuned one replaces "
                                                                     "(training: a paragraph; test, casp14: its "
                                                                     "fold-eval), compared in the card."),
) -> None:
    """Store a trained folding model as float16 with its evaluation and model card."""
    from foldatlas.errors import InvalidFileError
    from foldatlas.train.release import release_fold

    if not (run / "model" / "config.json").is_file():
        raise InvalidFileError(f"{run}: no finished model (run 'foldatlas train fold' to the end first)")
    if not (eval_dir / "targets.tsv").is_file():
        raise InvalidFileError(f"{eval_dir}: no targets.tsv")
    before = _read_previous(previous) if previous is not None else None
    metrics = release_fold(run, data_dir, eval_dir, dest, machine, test_chains=test_chains, log=_log,
                           previous=before)
    typer.echo(_means_json(metrics))


@train_app.command("alphabet")
def alphabet(
    structuredb: Path = typer.Option(..., "--structuredb", help="StructureDB dump (train/promod3_dump.py)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for alphabet.json (e.g. "
                                                      "src/foldatlas/weights/foldatlas-3d-alphabet)."),
    exclude: Optional[Path] = typer.Option(None, "--exclude", help="File of chain IDs never to train on "
                                                                  "(e.g. a benchmark's database)."),
    chains: int = typer.Option(3000, "--chains", min=100),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Fit the structural alphabet of the structure search (states, substitution matrix) on PDB chains."""
    import json

    from foldatlas.errors import InvalidFileError
    from foldatlas.train.alphabet import train_alphabet

    for path in (structuredb, exclude):
        if path is not None and not path.is_file():
            raise InvalidFileError(f"{path}: no such file")
    ids = set(exclude.read_text().split()) if exclude else set()
    report = train_alphabet(str(structuredb), out, exclude=ids, chains=chains, seed=seed, log=_log)
    typer.echo(json.dumps(report, indent=1))


def register(app: typer.Typer) -> None:
    """Add the ``train`` group to ``app``."""
    app.add_typer(train_app, name="train")
