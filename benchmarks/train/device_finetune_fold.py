"""Fine-tune the embedded folding model on a GPU with AlphaFold's violation losses (issue 21).

Prepared on the CPU, run once on a lent GPU machine (only 64 MiB travel, so the
training set goes as ``foldatlas train pack`` output)::

    foldatlas train pack --data DATA --out .gpu/data --window 160 --max-chains 9000
    PYTHONPATH=src python3 benchmarks/train/device_finetune_fold.py --data .gpu/data --out $OUT --seconds 360

It starts from ``foldatlas-fold-small`` (or ``--init``, e.g. the ``model/`` of an
earlier run on the same machine), scores the validation chains before training,
times a short probe to size the cosine schedule to the time left (``--seconds``
counts from the script's start), trains (batches of 32 crops of 128, 0-1
recycles, dropout off; the violation weights of the shipped model's run,
BENCHMARKS.md: 2.0, clash part 0.1, unclamped FAPE 0.3) and
writes to ``--out`` three files (the device returns at most eight, so two runs
side by side fit): the trained weights in float16 without the frozen language
model (``trunk.safetensors``, about 9 MB), the run's ``log.jsonl`` and
``summary.json`` (with the config; JSON on stdout too). Back here, ``--assemble
OUT --run RUN`` puts them together with the language model of ``--init`` into a
run folder (``RUN/model``, ``log.jsonl``, ``config.json``) for ``foldatlas train
fold-release``, which evaluates it on the CPU as the shipped model was.
``--structure-module-only`` trains the structure module and pLDDT head alone on
``--cached-crops`` kept trunk outputs (:mod:`foldatlas.train.fold_sm`) instead of
the whole model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path


def radius_ratio(model, chains: list[dict], cfg) -> float:
    """Mean radius of gyration of predicted over experimental C-alpha (crops of 256): 1 is the right size."""
    import numpy as np
    import torch

    from foldatlas.train.fold import chain_batch, eval_mode

    rng, ratios = np.random.default_rng(0), []
    with eval_mode(model), torch.no_grad():
        for ch in chains:
            aatype, mask, coords, residx = (t.to(cfg.device) for t in chain_batch([ch], 256, rng))
            out = model(input_ids=aatype, attention_mask=mask, position_ids=residx, num_recycles=cfg.max_recycles)
            pred, true = out.positions[-1][0, :, 1], coords[0, :, 1]
            rg = [float(((x - x.mean(0)) ** 2).sum(-1).mean().sqrt()) for x in (pred, true)]
            ratios.append(rg[0] / rg[1])
    return round(float(np.mean(ratios)), 3)


def save_trunk(model, path: Path) -> None:
    """Save the trainable weights (all but the frozen language model ``esm.``) as float16 safetensors."""
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").half().contiguous() for k, v in model.state_dict().items()
             if not k.startswith("esm.")}
    save_file(state, str(path))


def assemble(device_out: Path, run: Path, init: str) -> None:
    """Write ``run/model`` (``init``'s language model + the device run's trunk), ``log.jsonl``, ``config.json``."""
    import torch
    from safetensors.torch import load_file
    from transformers import EsmForProteinFolding

    from foldatlas.models.loading import from_pretrained_quietly
    from foldatlas.models.registry import resolve_model
    from foldatlas.train.lm import write_tokenizer

    model = from_pretrained_quietly(EsmForProteinFolding, resolve_model(init).path, init, dtype=torch.float32)
    trunk = load_file(str(device_out / "trunk.safetensors"))
    expected = {k for k in model.state_dict() if not k.startswith("esm.")}
    if set(trunk) != expected:
        raise SystemExit(f"error: {device_out / 'trunk.safetensors'} does not match {init}'s trunk "
                         f"({len(set(trunk) ^ expected)} names differ)")
    model.load_state_dict({k: v.float() for k, v in trunk.items()}, strict=False)
    run.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(run / "model"), safe_serialization=True)
    write_tokenizer(run / "model")
    summary = json.loads((device_out / "summary.json").read_text())
    shutil.copy(device_out / "log.jsonl", run / "log.jsonl")
    (run / "config.json").write_text(json.dumps({**summary["config"], "device_name": summary.get("device")}, indent=2))
    print(json.dumps({"run": str(run), "steps": summary.get("steps"), "after": summary.get("after")}))


def _train(args, cfg, work: Path, log) -> tuple:
    """Probe, size the cosine schedule to the time left, train; return (model, config record, summary part)."""
    import torch

    from foldatlas.train.checkpoints import load_training_state
    from foldatlas.train.fold import build_fold_model, train_fold
    from foldatlas.train.fold_sm import train_structure_module

    if args.structure_module_only:
        def run(c, until=None, log=log):
            return train_structure_module(args.data, work, c, crops=args.cached_crops, log=log, until=until)
        # the kept trunk outputs are made in the first call (and timed apart from the steps)
        run(cfg, until=1, log=print)
    else:
        def run(c, until=None, log=log):
            return train_fold(args.data, work, c, log=log, until=until)
    quiet = lambda m: None  # noqa: E731
    run(cfg, until=args.probe_steps // 2, log=quiet)
    mid = time.time()
    run(cfg, until=args.probe_steps, log=quiet)
    per_step = (time.time() - mid) / (args.probe_steps - args.probe_steps // 2)
    left = args.seconds - (time.time() - args.t0)
    steps = max(args.probe_steps + 1, args.probe_steps + int(left / per_step * 0.9))
    part = {"seconds_per_step": round(per_step, 4), "steps": steps}
    print(json.dumps(part), flush=True)
    cfg = replace(cfg, steps=steps, time_limit=max(10.0, left))
    final = run(cfg)
    record = json.loads((work / "config.json").read_text())
    if final is not None:
        from transformers import EsmForProteinFolding

        return EsmForProteinFolding.from_pretrained(str(final), dtype=torch.float32), record, part
    model = build_fold_model(replace(cfg, device="cpu"))  # out of time: the last checkpoint's weights
    modules = ({"structure_module": model.trunk.structure_module, "lddt_head": model.lddt_head}
               if args.structure_module_only else {"model": model})
    trainable = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    part["stopped_at"] = load_training_state(work / "state", modules, torch.optim.AdamW(trainable))
    return model, record, part


def main(argv: list[str] | None = None) -> None:
    t0 = time.time()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="Folder with structures_{train,valid}.npz (packed or not).")
    ap.add_argument("--out", help="Folder for the model, logs and summary.")
    ap.add_argument("--work", default="/tmp/foldatlas-finetune", help="Run folder (checkpoints).")
    ap.add_argument("--seconds", type=float, default=360.0,
                    help="Training ends this many seconds after the script starts (probe and kept crops included).")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--violation", type=float, default=2.0)
    ap.add_argument("--violation-clash", type=float, default=0.1, help="Scale of the all-atom clash part.")
    ap.add_argument("--violation-bond", type=float, default=1.0, help="Scale of the peptide C-N length part.")
    ap.add_argument("--violation-bond-tolerance", type=float, default=12.0,
                    help="Flat bottom of the C-N length term, standard deviations (AlphaFold: 12).")
    ap.add_argument("--violation-angle-tolerance", type=float, default=12.0,
                    help="Flat bottom of the two angle terms, standard deviations (AlphaFold: 12).")
    ap.add_argument("--unclamped-fape", type=float, default=0.3)
    ap.add_argument("--init", default="foldatlas-fold-small")
    ap.add_argument("--dropout", action="store_true", help="Train with dropout on (the runs before the ninth "
                    "session did; it changes the structure module's geometry, so fine-tuning now runs without).")
    ap.add_argument("--structure-module-only", action="store_true",
                    help="Fine-tune the structure module and pLDDT head alone on kept trunk outputs "
                    "(foldatlas.train.fold_sm), as the shipped model was on the CPU.")
    ap.add_argument("--cached-crops", type=int, default=4000, help="Kept crops for --structure-module-only.")
    ap.add_argument("--probe-steps", type=int, default=40)
    ap.add_argument("--eval-chains", type=int, default=20)
    ap.add_argument("--assemble", metavar="OUT", help="Build a run folder from a device run's OUT (needs --run).")
    ap.add_argument("--run", help="Run folder to write with --assemble.")
    args = ap.parse_args(argv)
    args.t0 = t0
    if args.assemble:
        if not args.run:
            ap.error("--assemble needs --run")
        assemble(Path(args.assemble), Path(args.run), args.init)
        return
    if not args.data or not args.out:
        ap.error("--data and --out are needed to train")

    import torch
    import transformers

    from foldatlas.train.data import load_structures
    from foldatlas.train.fold import FoldTrainConfig, _validate, build_fold_model

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    summary = {"torch": torch.__version__, "transformers": transformers.__version__,
               "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device}
    print(json.dumps(summary), flush=True)
    # the shipped model's sizes (its card): 4 trunk blocks, sequence 256, pair 32, 8 structure-module blocks
    cfg = FoldTrainConfig(lm="foldatlas-lm-small", blocks=4, sequence_dim=256, pairwise_dim=32, head_width=32,
                          sm_dim=128, sm_blocks=8, ipa_heads=8, crop=128, batch_size=args.batch_size, steps=10**6,
                          lr=args.lr, warmup=args.warmup, min_lr_ratio=0.1, max_recycles=1, seed=0,
                          checkpoint_every=10**9, eval_every=10**9, eval_chains=args.eval_chains, log_every=25,
                          violation=args.violation, violation_clash=args.violation_clash,
                          violation_bond=args.violation_bond,
                          violation_bond_tolerance=args.violation_bond_tolerance,
                          violation_angle_tolerance=args.violation_angle_tolerance,
                          unclamped_fape=args.unclamped_fape, init=args.init, device=args.device,
                          dropout=args.dropout)
    valid_set = load_structures(Path(args.data) / "structures_valid.npz")
    valid = [valid_set.chain(k) for k in range(min(cfg.eval_chains, len(valid_set)))]
    t1 = time.time()
    start_model = build_fold_model(cfg).to(args.device)
    summary["before"] = dict(_validate(start_model, valid, cfg), radius_ratio=radius_ratio(start_model, valid, cfg))
    print(json.dumps({"before": summary["before"], "seconds": round(time.time() - t1, 1)}), flush=True)
    del start_model
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "log.jsonl", "a") as f:  # the validation before training, as step 0 of the curve
        f.write(json.dumps({"step": 0, **summary["before"]}) + "\n")

    started = time.time()
    model, record, part = _train(args, cfg, work, print)
    summary.update(part)
    summary["train_seconds"] = round(time.time() - started, 1)
    summary["config"] = record
    model.to(args.device)
    summary["after"] = dict(_validate(model, valid, cfg), radius_ratio=radius_ratio(model, valid, cfg))
    save_trunk(model, out / "trunk.safetensors")
    shutil.copy(work / "log.jsonl", out / "log.jsonl")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}), flush=True)


if __name__ == "__main__":
    main()
