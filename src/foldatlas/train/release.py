"""Releasing a trained model into the package: float16 safetensors, tokenizer, model card.

The card says what the model was trained on, how, and how well it does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from foldatlas.files import atomic_write_text

__all__ = ["write_lm_card", "release_lm", "write_fold_card", "release_fold", "paired_difference",
           "paired_line"]


def _training_summary(run_dir: Path, step_key: str = "mlm", valid_key: str = "valid_perplexity") -> dict:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in rows if step_key in r]
    evals = [r for r in rows if valid_key in r]
    # Wall time: sum of gaps between logged steps of one run (resumes leave larger gaps; cap them).
    times = [r["time"] for r in steps]
    gaps = [b - a for a, b in zip(times, times[1:]) if 0 < b - a < 600]
    return {"steps": steps[-1]["step"] if steps else 0, "final_loss": steps[-1][step_key] if steps else None,
            "tokens_per_s": steps[-1].get("tokens_per_s") if steps else None,
            "s_per_step": steps[-1].get("s_per_step") if steps else None,
            "train_hours": round(sum(gaps) / 3600, 2), "valid_curve": evals,
            "date": time.strftime("%Y-%m-%d", time.gmtime(times[-1])) if times else "unknown"}


def _stage_float16(model_class, run_dir: Path, dest: Path):
    """Write the run's final model as float16 safetensors + tokenizer into ``dest``'s staging folder."""
    import shutil

    import torch

    from foldatlas.train.lm import write_tokenizer

    model = model_class.from_pretrained(str(run_dir / "model"), dtype=torch.float32)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(torch.float16).save_pretrained(str(tmp), safe_serialization=True)
    write_tokenizer(tmp)
    return model, tmp


def _finish_release(tmp: Path, dest: Path) -> None:
    import shutil

    for f in tmp.iterdir():  # some writers create files 0600; a package's files must be readable by all
        f.chmod(0o644)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.replace(dest)


def write_lm_card(model_dir: str | Path, run_dir: str | Path, data_manifest: dict, metrics: dict,
                  machine: str) -> str:
    """Write ``README.md`` (the model card) into the released language-model folder.

    Parameters
    ----------
    model_dir : path
        The released folder (``config.json``, ``model.safetensors``...).
    run_dir : path
        The training run (``config.json`` of the run, ``log.jsonl``).
    data_manifest : dict
        ``manifest.json`` of the training data.
    metrics : dict
        Output of :func:`foldatlas.train.lm_eval.evaluate_lm`.
    machine : str
        Where it was trained, in words.

    Returns
    -------
    str
        The card's text.
    """
    model_dir, run_dir = Path(model_dir), Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    arch = json.loads((model_dir / "config.json").read_text())
    summary = _training_summary(run_dir)
    counts = data_manifest["counts"]
    v, t, c = metrics["valid_uniprot"], metrics["test_structures"], metrics["contacts"]
    curve = "\n".join(f"| {r['step']} | {r['valid_perplexity']:.2f} |" for r in summary["valid_curve"])
    text = f"""# foldatlas-lm-small

An ESM-2-architecture protein language model (`transformers.EsmForMaskedLM`, ESM-2 vocabulary and tokenizer,
rotary positions) trained from scratch by the foldatlas project with `foldatlas train lm`. It loads exactly like
`facebook/esm2_t6_8M_UR50D` and is far weaker than Meta's ESM-2 models: it exists so that embeddings, contacts and
variant scores work offline out of the box. Use `--model facebook/esm2_t33_650M_UR50D` (or any `facebook/esm2_t*`
checkpoint in your hub cache) for real work.

## Architecture
{arch['num_hidden_layers']} layers, width {arch['hidden_size']}, {arch['num_attention_heads']} heads, feed-forward
{arch['intermediate_size']}; {metrics['parameters']:,} parameters; weights stored as float16 safetensors. The contact
head (`esm.contact_head`) holds the logistic regression fitted as described below.

## Data
From Debian packages, extracted by `foldatlas train data` (data manifest checksums recorded by the run):
- `metastudent-data`: {counts['uniprot_records']:,} UniProt records (three overlapping GO-namespace BLAST databases),
  {counts['uniprot_unique']:,} unique usable sequences;
- `promod3-data` StructureDB: {counts['structure_chains']:,} non-redundant PDB chains with sequence profiles.

Split: {data_manifest['split_rule']}.
Removed as homologs of held-out sequences: {counts['removed_uniprot']:,} UniProt sequences and
{counts['removed_structure_chains']:,} structure chains. Language-model training set: {counts['lm_train']:,} sequences
({counts['lm_train_residues']:,} residues); held-out UniProt validation: {counts['lm_valid']:,} sequences.

## Training
Masked-LM (15% of residues; 80% `<mask>`, 10% random, 10% kept), random crops of {cfg['crop']} residues, batches of
{cfg['batch_size']} sequences, AdamW (lr {cfg['lr']}, warm-up {cfg['warmup']} steps, cosine to
{cfg['min_lr_ratio']}x, weight decay {cfg['weight_decay']}), seed {cfg['seed']}; {summary['steps']:,} steps.
Auxiliary loss (weight {cfg['profile_weight']}): for {cfg['profile_fraction']:.0%} of each batch drawn from the
StructureDB training chains, a linear head (dropped from this release) predicts each residue's sequence-profile
column. Compute: {summary['train_hours']} hours on {machine} (about {summary['tokens_per_s']:,.0f} tokens/s),
finished {summary['date']}.

Validation perplexity during training (held-out UniProt, crops of {2 * cfg['crop']}):

| step | perplexity |
|---|---|
{curve}

## Metrics
From `foldatlas train lm-eval` (same script computes the baselines):

| set | masked-LM perplexity | unigram baseline |
|---|---|---|
| held-out UniProt ({v['masked_tokens']:,} masked residues) | {v['perplexity']:.2f} | {v['unigram_perplexity']:.2f} |
| test structure chains ({t['masked_tokens']:,} masked residues) | {t['perplexity']:.2f} | {t['unigram_perplexity']:.2f} |

Unsupervised contacts (ESM-2 recipe: symmetrized, APC-corrected attention maps of all
{arch['num_hidden_layers'] * arch['num_attention_heads']} heads, L1 logistic regression fitted on
{metrics.get('contact_fit', {}).get('chains', '?')} training chains; C-beta within {c['cutoff_angstrom']} A):
top-L long-range (|i-j| >= {c['min_separation']}) precision on {c['test_chains']} test chains:
**{c['top_l_long_range_precision']:.3f}**, random baseline {c['random_baseline']:.3f}. For reference, ESM-2 8M
reaches 0.16 on its own validation set.

## Limits
Small and briefly trained: perplexity is far from ESM-2's, contact maps are weak; the profile auxiliary loss was not
ablated against plain masked-LM training. No test chain or evaluation domain
has a homolog above 30% identity in the training data (as MMseqs2 finds them).
"""
    atomic_write_text(model_dir / "README.md", text)
    return text


def release_lm(run_dir: str | Path, data_dir: str | Path, dest: str | Path, machine: str, log=print) -> dict:
    """Copy a trained LM into ``dest`` as float16, fit its contact head, evaluate it, write its card.

    Parameters
    ----------
    run_dir : path
        Run folder of ``foldatlas train lm`` (with ``model/``).
    data_dir : path
        Folder written by ``foldatlas train data``.
    dest : path
        The release folder (for the shipped model,
        ``src/foldatlas/weights/foldatlas-lm-small``); replaced.
    machine : str
        Where it was trained, for the card.
    log : callable

    Returns
    -------
    dict
        The metrics (also written to ``run_dir/metrics.json``).
    """
    from transformers import EsmForMaskedLM

    from foldatlas.train.lm_eval import evaluate_lm

    run_dir, dest = Path(run_dir), Path(dest)
    _, tmp = _stage_float16(EsmForMaskedLM, run_dir, dest)
    metrics = evaluate_lm(str(tmp), data_dir, fit_contacts=True, log=log)
    manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    write_lm_card(tmp, run_dir, manifest, metrics, machine)
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    _finish_release(tmp, dest)
    return metrics


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def _fold_table(result: dict) -> str:
    m, u = result["model"]["mean"], result["untrained"]["mean"]
    rows = [("mean TM-score", m["tm_score"], u["tm_score"], m["helix_tm_score"]),
            ("mean lDDT-Ca", m["lddt_ca"], u["lddt_ca"], m["helix_lddt_ca"]),
            ("pLDDT vs lDDT-Ca, Pearson r", m["plddt_pearson"], u["plddt_pearson"], None),
            ("3-state SS agreement with DSSP", m.get("ss_agreement"), u.get("ss_agreement"),
             m.get("helix_ss_agreement")),
            ("mean pLDDT / 100", m["mean_plddt"] / 100, u["mean_plddt"] / 100, None)]
    if "breaks_per_100" in m:  # geometry of the predictions (foldatlas.structure.geometry)
        rows += [("chain breaks per 100 residues", m["breaks_per_100"], u.get("breaks_per_100"), None),
                 ("clashscore (heavy atoms)", m["clashscore"], u.get("clashscore"), None)]
    lines = ["| metric | this model | untrained twin | ideal helix |", "|---|---|---|---|"]
    lines += [f"| {name} | {_fmt(a)} | {_fmt(b)} | {_fmt(c)} |" for name, a, b, c in rows]
    return "\n".join(lines)


def _setting(cfg: dict, key: str):
    """A run's recorded training setting, or ``FoldTrainConfig``'s default (runs from before an option was added)."""
    from foldatlas.train.fold import FoldTrainConfig

    return cfg.get(key, getattr(FoldTrainConfig, key))


def _flat_bottoms(cfg: dict) -> str:
    """The violation terms' flat bottoms in words."""
    bond, angle = _setting(cfg, "violation_bond_tolerance"), _setting(cfg, "violation_angle_tolerance")
    if bond == angle:
        return f"peptide C-N length, CA-C-N and C-N-CA angles with a {bond:g}-sigma flat bottom"
    return (f"peptide C-N length with a {bond:g}-sigma flat bottom, CA-C-N and C-N-CA angles with a {angle:g}-sigma "
            "one")


def _losses_text(cfg: dict) -> str:
    scale = _setting(cfg, "violation_bond")
    bond = f", the C-N length part by {scale:g}" if scale != 1.0 else ""
    overlap = _setting(cfg, "violation_clash_overlap")
    return (f"AlphaFold's between-residue violation losses added (`foldatlas.train.fold_losses."
            f"structural_violations`: {_flat_bottoms(cfg)}, "
            f"heavy-atom clashes beyond {overlap:g} A of van der Waals overlap), weight {cfg.get('violation')}, "
            f"the all-atom clash part scaled by "
            f"{cfg.get('violation_clash')}{bond}, unclamped FAPE share {cfg.get('unclamped_fape')}")


def _earlier_stages(cfg: dict) -> list[tuple[dict, Path]]:
    """The training runs a fine-tuning started from, oldest first.

    A run whose ``init`` is another run's ``model/`` folder (a run folder with ``config.json`` and ``log.jsonl``)
    continued that run's model; each such run is a stage of this model's fine-tuning.
    """
    stages: list[tuple[dict, Path]] = []
    init = cfg.get("init")
    while init and Path(init).name == "model" and (Path(init).parent / "log.jsonl").is_file() \
            and (Path(init).parent / "config.json").is_file():
        run = Path(init).parent
        if any(run == r for _, r in stages):
            break
        stage = json.loads((run / "config.json").read_text())
        stages.insert(0, (stage, run))
        init = stage.get("init")
    return stages


def _long_chains(cfg: dict) -> str:
    """Words for a run that trained on long chains alone (``min_length`` above the default), else nothing."""
    from foldatlas.train.fold import FoldTrainConfig

    shortest = _setting(cfg, "min_length")
    return f" from chains of at least {shortest} residues" if shortest > FoldTrainConfig.min_length else ""


def _long_crops(cfg: dict) -> str:
    """Words for a run that also trained on kept long crops (``--long-crop``), else nothing."""
    if not cfg.get("long_crop"):
        return ""
    every = cfg["long_every"]
    nth = {1: "", 2: " second"}.get(every, f" {every}th")
    return (f"; every{nth} step instead {cfg['long_batch_size']} of {cfg['long_cached_crops']:,} kept crops of "
            f"{cfg['long_crop']} residues from chains of at least {cfg['long_crop']}"
            + (" (the short crops unused)" if every == 1 else ""))


def _crop_uses(cfg: dict, steps: int) -> tuple[float, float, float]:
    """Training residues seen in ``steps`` steps, and how many times each short and each long kept crop was used on
    average."""
    from foldatlas.train.fold import FoldTrainConfig
    from foldatlas.train.fold_sm import is_long_step

    run = FoldTrainConfig(long_crop=_setting(cfg, "long_crop"), long_every=_setting(cfg, "long_every"))
    long_steps = sum(is_long_step(step, run) for step in range(steps))  # the training loop's own rule
    short = (steps - long_steps) * cfg["batch_size"]
    seen = short * cfg["crop"] + long_steps * cfg.get("long_batch_size", 0) * cfg.get("long_crop", 0)
    long_uses = long_steps * cfg.get("long_batch_size", 0) / max(1, cfg.get("long_cached_crops", 1))
    return seen, short / max(1, cfg.get("cached_crops", 1)), long_uses


def _uses_words(short: float, long: float) -> str:
    """How often each kept crop was used (:func:`_crop_uses`), in words: the short ones', or the long ones' when no
    short one was."""
    return f"short crop about {short:.1f} times" if short else f"long crop about {long:.1f} times"


def _stage_text(cfg: dict, summary: dict) -> str:
    """One fine-tuning stage in words (its config and training summary): what was trained, where, how long, losses."""
    gpu = str(cfg.get("device", "cpu")).startswith("cuda")
    where = (f"one {cfg['device_name']}" if cfg.get("device_name") else "a GPU") if gpu else "a CPU"
    what = ("its structure module and pLDDT head alone, on kept trunk outputs of "
            f"{cfg.get('cached_crops', 0):,} training crops" if cfg.get("structure_module_only")
            else "the whole model but its frozen language model")
    dropout = "on" if cfg.get("dropout", True) and not cfg.get("structure_module_only") else "off"
    return (f"{what}, on {where}: {summary['steps']:,} steps of {cfg['batch_size']} crops of {cfg['crop']}"
            f"{_long_chains(cfg)}{_long_crops(cfg)} ({summary['train_hours']} hours), lr {cfg['lr']}, "
            f"dropout {dropout}, with {_losses_text(cfg)}")


def _fine_tuning(cfg: dict, summary: dict, compute: str) -> tuple[str, str, str]:
    """The card's origin phrase, fine-tuning paragraph and compute phrase for a model fine-tuned from ``init``."""
    stages = [(c, _training_summary(run, step_key="fape", valid_key="valid_lddt_ca"))
              for c, run in _earlier_stages(cfg)]
    sm_only = cfg.get("structure_module_only")
    compute = f"the base model's CPU hours, then {compute} in fine-tuning"
    if stages:
        origin = "trained (from scratch on a CPU, then fine-tuned in stages on GPUs and CPUs)"
        compute += f" (and {sum(s['train_hours'] for _, s in stages):.2f} hours in the earlier stages)"
        steps = "; ".join(f"({k}) {_stage_text(c, s)}" for k, (c, s) in enumerate(stages, 1))
        tuning = (f"\n\nFine-tuning: started from the previous `{stages[0][0].get('init')}` (see Previous model) and "
                  f"trained in {len(stages) + 1} stages, each from the model of the one before: {steps}; "
                  f"({len(stages) + 1}) the run whose numbers this section gives.")
        last = "The last stage"
    else:
        origin = ("trained (from scratch on a CPU, fine-tuned on a GPU, its structure module then fine-tuned on a CPU)"
                  if sm_only else "trained (from scratch on a CPU, then fine-tuned on a GPU)")
        tuning = f"\n\nFine-tuning: started from the previous `{cfg['init']}` (see Previous model)."
        last = "Only the structure module and pLDDT head were trained" if sm_only else "It"
    if not sm_only:
        return origin, tuning + f" {last} trained the whole model but its frozen language model with " \
                                f"{_losses_text(cfg)}.", compute
    tuning += (f" {last} (`foldatlas train fold --structure-module-only`): the language model and folding trunk "
               f"frozen, their outputs for {cfg.get('cached_crops', 0):,} training crops of {cfg['crop']} residues"
               f"{_long_chains(cfg)} folded once as inference folds them and kept; each step then runs the structure "
               f"module alone on {cfg['batch_size']} of them{_long_crops(cfg)}, with FAPE, the pLDDT loss and "
               f"{_losses_text(cfg)}. The training residues seen (under Limits) count a crop each time it was used, "
               f"each {_uses_words(*_crop_uses(cfg, summary['steps'])[1:])}.")
    return origin, tuning, compute


def _previous_section(previous: dict | None, metrics: dict) -> str:
    """The card's comparison with the model this one replaces (its numbers measured by the same script).

    ``previous`` may list the models before it under ``earlier`` (oldest first, each with a ``label`` and the same
    ``test``/``casp14`` metrics): each gets a column, so a card keeps every earlier generation's numbers.
    """
    if not previous:
        return ""
    keys = (("mean TM-score", "tm_score"), ("mean lDDT-Ca", "lddt_ca"), ("chain breaks per 100 residues",
                                                                           "breaks_per_100"),
            ("clashscore (heavy atoms)", "clashscore"), ("pLDDT vs lDDT-Ca, Pearson r", "plddt_pearson"))
    models = [*previous.get("earlier", []), previous]
    heads = [m.get("label", "previous") for m in models]
    lines = [f"## Previous model\n{previous.get('training', '')}\n",
             "| set | metric | " + " | ".join(heads) + " | this model |", "|---|---|" + "---|" * (len(models) + 1)]
    for name, label in (("test", "test split"), ("casp14", "19 CASP14 domains")):
        if name in metrics and any(name in m for m in models):
            new = metrics[name]["model"]["mean"]
            for title, k in keys:
                old = [_fmt(m[name]["model"]["mean"].get(k)) if name in m else "–" for m in models]
                lines.append(f"| {label} | {title} | " + " | ".join(old) + f" | {_fmt(new.get(k))} |")
    paired = paired_line(previous, metrics)
    if paired:
        lines.append("\n" + paired)
    return "\n".join(lines) + "\n"


def paired_line(previous: dict, metrics: dict) -> str | None:
    """One sentence with the paired TM-score and lDDT-Ca differences of ``metrics`` against ``previous``.

    Parameters
    ----------
    previous, metrics : dict
        Two evaluations (``foldatlas train fold-eval``'s JSON; ``previous`` may carry a ``label``), whose ``test``
        and ``casp14`` results keep their per-chain ``rows``.

    Returns
    -------
    str or None
        "Chain by chain against LABEL (...): the test split (N chains): TM-score +x ± se, ..." ; None when no set
        has at least two chains scored by both.
    """
    paired = []
    for name, label in (("test", "the test split"), ("casp14", "the 19 CASP14 domains")):
        old_rows, new_rows = (m.get(name, {}).get("model", {}).get("rows") for m in (previous, metrics))
        diffs = [(title, d) for title, k in (("TM-score", "tm_score"), ("lDDT-Ca", "lddt_ca"))
                 if (d := paired_difference(old_rows, new_rows, k))]
        if diffs:
            paired.append(f"{label} ({diffs[0][1][0]} chains): "
                          + ", ".join(f"{title} {d[1]:+.4f} ± {d[2]:.4f}" for title, d in diffs))
    if not paired:
        return None
    return (f"Chain by chain against {previous.get('label', 'the previous model')} (this model minus it, "
            "mean ± one standard error over the chains both scored): " + "; ".join(paired) + ".")


def paired_difference(old_rows: list[dict] | None, new_rows: list[dict] | None,
                      key: str) -> tuple[int, float, float] | None:
    """Mean and standard error of a per-chain metric's change between two models, over the chains both scored.

    Parameters
    ----------
    old_rows, new_rows : list of dict or None
        Per-chain rows of two evaluations (``foldatlas train fold-eval``), each with ``id`` and ``key``.
    key : str
        The metric, e.g. ``"tm_score"``.

    Returns
    -------
    tuple of (int, float, float) or None
        The number of chains, the mean of new minus old, and its standard error; None when fewer than two chains
        are in both.
    """
    if not old_rows or not new_rows:
        return None
    old = {r["id"]: r[key] for r in old_rows if r.get(key) is not None}
    diffs = [r[key] - old[r["id"]] for r in new_rows if r.get(key) is not None and r["id"] in old]
    n = len(diffs)
    if n < 2:
        return None
    mean = sum(diffs) / n
    se = (sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) ** 0.5
    return n, mean, se


def _head_refit_paragraph(run_dir: Path) -> str:
    """The card's account of a pLDDT head refitted by ``foldatlas train fold-heads`` (``head_refit.json``)."""
    path = run_dir / "head_refit.json"
    if not path.is_file():
        return ""
    h = json.loads(path.read_text())
    b, a = h["before"], h["after"]
    return (f"\n\npLDDT head refitted (`foldatlas train fold-heads`): the trunk, structure module and other heads "
            f"as trained above, the pLDDT head alone fitted to the per-residue lDDT-Ca of this model's own folds of "
            f"{h['train_chains']:,} training chains (40 to {h['max_length']} residues; epoch {h['epoch']} of "
            f"{h['epochs']} kept, by the loss on {h['valid_chains']} validation chains). On those validation chains "
            f"the per-chain Pearson r of mean pLDDT with lDDT-Ca went {_fmt(b['pearson_r'])} -> "
            f"{_fmt(a['pearson_r'])}, the mean absolute error {b['mae']:.1f} -> {a['mae']:.1f} pLDDT points"
            + _residue_sentence(b.get("residues"), a.get("residues"))
            + ". The structures are those of the model before it.")


def _average_paragraph(run_dir: Path) -> tuple[str, float]:
    """The card's account of weights averaged by ``foldatlas train fold-average`` (``average.json``), and the other
    runs' training hours."""
    path = run_dir / "average.json"
    if not path.is_file():
        return "", 0.0
    avg = json.loads(path.read_text())
    parts, hours = [], 0.0
    for k, ing in enumerate(avg["runs"]):
        if k == avg["lead"]:
            parts.append(f"{ing['weight']:.2f} x the run described above")
            continue
        cfg, run = ing["config"], Path(ing["run"])
        stages = [*_earlier_stages(cfg), (cfg, run)]
        texts = []
        for c, r in stages:
            summary = _training_summary(r, step_key="fape", valid_key="valid_lddt_ca")
            hours += summary["train_hours"]
            texts.append(_stage_text(c, summary))
        steps = texts[0] if len(texts) == 1 else "; ".join(f"({j}) {s}" for j, s in enumerate(texts, 1))
        parts.append(f"{ing['weight']:.2f} x a run from the same `{stages[0][0].get('init')}` "
                     f"({len(texts)} stage{'s' if len(texts) > 1 else ''}: {steps})")
    return (f"\n\nWeight averaging (`foldatlas train fold-average`, a \"model soup\"): the released weights are the "
            f"parameter-by-parameter average of {len(avg['runs'])} fine-tunings of the same model "
            f"({avg['tensors_differing']} of {avg['tensors']} tensors differ between them): "
            + " and ".join(parts) + ".", hours)


def _residue_sentence(before: dict | None, after: dict | None) -> str:
    if not before or not after:
        return ""

    def diagram(r):
        return ", ".join(f"{p:.0f}/{t:.0f}" for p, t in r["quintiles"])

    return (f"; per residue, Pearson r {_fmt(before['pearson_r'])} -> {_fmt(after['pearson_r'])}, mean absolute "
            f"error {before['mae']:.1f} -> {after['mae']:.1f}, and mean pLDDT / mean 100 x lDDT-Ca in each fifth of "
            f"the residues ranked by pLDDT {diagram(before)} before, {diagram(after)} after")


def write_fold_card(model_dir: str | Path, run_dir: str | Path, data_manifest: dict, metrics: dict,
                    machine: str, previous: dict | None = None) -> str:
    """Write ``README.md`` (the model card) into the released folding-model folder.

    Parameters
    ----------
    model_dir : path
        The released folder.
    run_dir : path
        The training run of ``foldatlas train fold`` (``config.json``, ``log.jsonl``).
    data_manifest : dict
        ``manifest.json`` of the training data.
    metrics : dict
        Output of :func:`foldatlas.train.fold_eval.evaluate_fold` with ``test`` and ``casp14``.
    machine : str
        Where it was trained, in words.
    previous : dict, optional
        For a fine-tuned model: the model it started from, ``training`` (a paragraph) and its metrics
        (``test``/``casp14`` as :func:`foldatlas.train.fold_eval.evaluate_fold` gives them), compared in the card.

    Returns
    -------
    str
        The card's text.
    """
    model_dir, run_dir = Path(model_dir), Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    arch = json.loads((model_dir / "config.json").read_text())
    trunk = arch["esmfold_config"]["trunk"]
    summary = _training_summary(run_dir, step_key="fape", valid_key="valid_lddt_ca")
    counts = data_manifest["counts"]
    curve = "\n".join(f"| {r['step']} | {r['valid_fape']:.3f} | {r['valid_lddt_ca']:.3f} |"
                      for r in summary["valid_curve"])
    test, casp = metrics["test"], metrics["casp14"]
    per_domain = "\n".join(
        f"| {r['id']} | {r['length']} | {r['tm_score']:.3f} | {r['lddt_ca']:.3f} | {r['mean_plddt']:.1f} | "
        f"{r['helix_tm_score']:.3f} |" for r in casp["model"]["rows"])
    tm = casp["model"]["mean"]["tm_score"]
    same_fold = sum(r["tm_score"] > 0.5 for r in casp["model"]["rows"])
    origin = "trained from scratch"
    tuning = ""
    seen = _crop_uses(cfg, summary["steps"])[0] / 1e6
    compute = f"{summary['train_hours']} hours on {machine}, about {seen:.2f} M training residues seen"
    if cfg.get("init"):
        origin, tuning, compute = _fine_tuning(cfg, summary, compute)
    tuning += _head_refit_paragraph(run_dir)
    averaged, other_hours = _average_paragraph(run_dir)
    tuning += averaged
    if other_hours:
        compute += f" (and {other_hours:.2f} hours in the other averaged runs)"
    text = f"""# foldatlas-fold-small

foldatlas' embedded folding model: the ESMFold architecture (`transformers.EsmForProteinFolding`) at a small size,
{origin} by the foldatlas project with `foldatlas train fold` on experimental PDB chains, on top of the
project's own language model `foldatlas-lm-small` (frozen). It is what `foldatlas fold` uses when no `--model` is
given, so that folding works offline out of the box. **It is far less accurate than Meta's ESMFold**: mean TM-score
{tm:.2f} on 19 CASP14 domains, where Meta reports about 0.68 for ESMFold v1. For real work fold with
`--model facebook/esmfold_v1` (fetch the weights once with `hf download facebook/esmfold_v1`).

## Architecture
Language model: {arch['num_hidden_layers']} layers, width {arch['hidden_size']} (`foldatlas-lm-small`, frozen during
training, included in this checkpoint). Folding trunk: {trunk['num_blocks']} blocks, sequence state
{trunk['sequence_state_dim']}, pair state {trunk['pairwise_state_dim']}, head width {trunk['sequence_head_width']};
structure module width {trunk['structure_module']['sequence_dim']}, {trunk['structure_module']['num_blocks']}
shared-weight IPA blocks with {trunk['structure_module']['num_heads_ipa']} heads; distogram, pLDDT and pTM/PAE heads.
{metrics.get('trainable_parameters', 0):,} trained parameters. Default: {trunk['max_recycles'] - 1} recycle(s) after the
first pass, as in training. Weights stored as float16 safetensors, computed in float32.

## Data
Experimental chains of the `promod3-data` StructureDB ({counts['structure_chains']:,} non-redundant PDB chains with
backbone N, CA, C, O, C-beta), extracted by `foldatlas train data`. Split: {data_manifest['split_rule']}.
{counts['removed_structure_chains']:,} chains were removed from training as homologs of held-out sequences (test,
validation, the 19 CASP14 evaluation domains). Training chains: {counts['structures_train']:,}; test:
{counts['structures_test']:,}.

## Training
Losses (AlphaFold 2's, on the backbone atoms the data holds; `foldatlas.train.fold_losses`): FAPE on the frames of
every structure-module block and on the final backbone atoms (torsions through the atoms they place), clamped at
10 A and mixed 9:1 with the unclamped error; distogram; binned lDDT-Ca for pLDDT; binned aligned error for PAE/pTM;
torsion-norm penalty; and the structural-violation terms reduced to C-alpha (consecutive distances off the
experimental ones, non-local pairs closer than 3.5 A), without which a briefly trained model collapses into a ball
(FAPE's optimum when it cannot yet place distant residues) or scatters. Random contiguous crops of {cfg['crop']} residues, batches of
{cfg['batch_size']}, 0 to {cfg['max_recycles']} recycles per step (gradients through the last pass), AdamW (lr
{cfg['lr']}, warm-up {cfg['warmup']} steps, cosine to {cfg['min_lr_ratio']}x), seed {cfg['seed']};
{summary['steps']:,} steps. Compute: {summary['train_hours']} hours on {machine} (about {summary['s_per_step']} s per
step), finished {summary['date']}.{tuning}

Validation during training ({cfg['eval_chains']} validation chains, crops of 256):

| step | FAPE | lDDT-Ca |
|---|---|---|
{curve}

## Metrics
From `foldatlas train fold-eval` (one script scores the model and both baselines the same way: TM-align via tmtools
normalised by the experimental chain, lDDT-Ca with residues matched one to one, pydssp for the predicted backbone's
secondary structure; the untrained twin is this architecture with random trunk and heads over the same language
model).

Test split: {test['model']['n']} test chains of at most 400 residues:

{_fold_table(test)}

19 CASP14 domains (`shared/eval/structure`, never trained on):

{_fold_table(casp)}

| domain | length | TM-score | lDDT-Ca | mean pLDDT | helix TM-score |
|---|---|---|---|---|---|
{per_domain}

## Limits
The project's bar was a mean TM-score of 0.40 on the CASP14 domains (ESM-2 8M under AlphaFold 2's structure module
reaches 0.367); this model reaches {tm:.3f}, and {same_fold} of the 19 domains reach a TM-score above 0.5 (the same
fold). What limited it: compute ({compute}, against GPU-weeks for
ESMFold), a small trunk, and a weak language model underneath (its unsupervised contact precision is near random, so
the trunk has little coevolution-like signal to start from). Do not use it for biological conclusions; treat its pLDDT as a rough, poorly calibrated
signal (see the Pearson r above).
{"" if not previous else chr(10) + _previous_section(previous, metrics)}"""
    atomic_write_text(model_dir / "README.md", text)
    return text


def release_fold(run_dir: str | Path, data_dir: str | Path, eval_dir: str | Path, dest: str | Path, machine: str,
                 test_chains: int | None = None, log=print, previous: dict | None = None) -> dict:
    """Copy a trained folding model into ``dest`` as float16, evaluate it, write its card.

    Parameters
    ----------
    run_dir : path
        Run folder of ``foldatlas train fold`` (with ``model/``).
    data_dir : path
        Folder written by ``foldatlas train data`` (its test split is scored).
    eval_dir : path
        Evaluation domains (``targets.tsv`` + structure files).
    dest : path
        The release folder (for the shipped model,
        ``src/foldatlas/weights/foldatlas-fold-small``); replaced.
    machine : str
        Where it was trained, for the card.
    test_chains : int, optional
        Score only the first N test chains.
    log : callable
    previous : dict, optional
        The replaced model's description and metrics, for the card (:func:`write_fold_card`).

    Returns
    -------
    dict
        The metrics (also written to ``run_dir/metrics.json``).
    """
    from transformers import EsmForProteinFolding

    from foldatlas.train.fold_eval import evaluate_fold

    run_dir, dest = Path(run_dir), Path(dest)
    model, tmp = _stage_float16(EsmForProteinFolding, run_dir, dest)
    trainable = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("esm."))
    metrics = evaluate_fold(str(tmp), data_dir, eval_dir, test_chains=test_chains, log=log)
    metrics["model"] = dest.name
    metrics["trainable_parameters"] = trainable
    manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    write_fold_card(tmp, run_dir, manifest, metrics, machine, previous=previous)
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    _finish_release(tmp, dest)
    return metrics
