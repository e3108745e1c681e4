"""Releasing a trained model into the package: float16 safetensors, tokenizer, model card.

The card says what the model was trained on, how, and how well it does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from foldatlas.files import atomic_write_text

__all__ = ["write_lm_card", "release_lm"]


def _training_summary(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in rows if "mlm" in r]
    evals = [r for r in rows if "valid_perplexity" in r]
    # Wall time: sum of gaps between logged steps of one run (resumes leave larger gaps; cap them).
    times = [r["time"] for r in steps]
    gaps = [b - a for a, b in zip(times, times[1:]) if 0 < b - a < 600]
    return {"steps": steps[-1]["step"] if steps else 0, "final_mlm_loss": steps[-1]["mlm"] if steps else None,
            "tokens_per_s": steps[-1]["tokens_per_s"] if steps else None,
            "train_hours": round(sum(gaps) / 3600, 2), "valid_curve": evals,
            "date": time.strftime("%Y-%m-%d", time.gmtime(times[-1])) if times else "unknown"}


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
    import shutil

    import torch
    from transformers import EsmForMaskedLM

    from foldatlas.train.lm import write_tokenizer
    from foldatlas.train.lm_eval import evaluate_lm

    run_dir, dest = Path(run_dir), Path(dest)
    model = EsmForMaskedLM.from_pretrained(str(run_dir / "model"), dtype=torch.float32)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(torch.float16).save_pretrained(str(tmp), safe_serialization=True)
    write_tokenizer(tmp)
    metrics = evaluate_lm(str(tmp), data_dir, fit_contacts=True, log=log)
    manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    write_lm_card(tmp, run_dir, manifest, metrics, machine)
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    for f in tmp.iterdir():  # some writers create files 0600; a package's files must be readable by all
        f.chmod(0o644)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.replace(dest)
    return metrics
