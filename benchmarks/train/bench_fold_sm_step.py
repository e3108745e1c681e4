"""CPU cost of a fine-tuning step: the whole folding model against its structure module alone (issue 21).

Both steps take the same batch of training crops and the same losses (FAPE, AlphaFold's violation terms, pLDDT):
the whole-model step as ``foldatlas train fold --init`` runs it (language model frozen, trunk and heads trained,
gradients through the last pass), the other as ``foldatlas train fold --structure-module-only`` does (the trunk's
outputs computed once, then the structure module and pLDDT head alone). Prints JSON: median seconds per step over
``--repeats``, per crop, the one-off cost of keeping a crop's trunk outputs, and the ratio::

    python benchmarks/train/bench_fold_sm_step.py --data /work/data/train --batch-size 8 --crop 128
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="Folder written by 'foldatlas train data'.")
    ap.add_argument("--model", default="foldatlas-fold-small")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--recycles", type=int, default=1, help="Recycles of the whole-model step (no gradient).")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    import torch

    from foldatlas.train.data import load_structures
    from foldatlas.train.fold import FoldTrainConfig, _clear_openfold_caches, build_fold_model, chain_batch
    from foldatlas.train.fold_losses import LossWeights, folding_losses
    from foldatlas.train.fold_sm import collect_structure_inputs, structure_module_outputs

    torch.set_num_threads(args.threads)
    cfg = FoldTrainConfig(init=args.model, blocks=4, sequence_dim=256, pairwise_dim=32, crop=args.crop)
    model = build_fold_model(cfg)
    train = load_structures(f"{args.data}/structures_train.npz")
    long_enough = [k for k in range(len(train)) if train.offsets[k + 1] - train.offsets[k] >= args.crop]
    chains = [train.chain(k) for k in long_enough[:args.batch_size]]
    aatype, mask, coords, residx = chain_batch(chains, args.crop, np.random.default_rng(0))
    whole_weights = LossWeights(violation=2.0, violation_clash=0.1, unclamped_fape=0.3)
    sm_weights = LossWeights(distogram=0.0, pae=0.0, violation=2.0, violation_clash=0.1, unclamped_fape=0.3)

    def step(params, loss_fn):
        opt = torch.optim.AdamW(params, lr=1e-6)
        times = []
        for _ in range(args.repeats + 1):  # the first is a warm-up
            t = time.perf_counter()
            loss = loss_fn()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
        return statistics.median(times[1:])

    _clear_openfold_caches()
    model.train()
    whole_params = [p for p in model.parameters() if p.requires_grad]
    whole = step(whole_params, lambda: folding_losses(
        model(input_ids=aatype, attention_mask=mask, position_ids=residx, num_recycles=args.recycles),
        coords, aatype, mask, whole_weights)["loss"])

    t = time.perf_counter()
    cache = collect_structure_inputs(model, chains, args.crop, batch_size=args.batch_size, log=lambda m: None)
    collect = time.perf_counter() - t
    model.requires_grad_(False)
    sm_params = [*model.trunk.structure_module.parameters(), *model.lddt_head.parameters()]
    for p in sm_params:
        p.requires_grad_(True)
    single, pair = (torch.from_numpy(cache[k]).float() for k in ("single", "pair"))
    sm_aatype, sm_mask = (torch.from_numpy(cache[k]).long() for k in ("aatype", "mask"))
    sm_coords = torch.from_numpy(cache["coords"])
    model.train()
    alone = step(sm_params, lambda: folding_losses(
        structure_module_outputs(model, single, pair, sm_aatype, sm_mask), sm_coords, sm_aatype, sm_mask,
        sm_weights)["loss"])
    b = args.batch_size
    print(json.dumps({
        "benchmark": "fold_sm_step", "machine": platform.processor() or platform.machine(),
        "threads": args.threads, "torch": torch.__version__, "batch_size": b, "crop": args.crop,
        "whole_model_recycles": args.recycles,
        "whole_model_s_per_step": round(whole, 3), "whole_model_s_per_crop": round(whole / b, 3),
        "whole_model_trainable": sum(p.numel() for p in whole_params),
        "structure_module_s_per_step": round(alone, 3), "structure_module_s_per_crop": round(alone / b, 3),
        "structure_module_trainable": sum(p.numel() for p in sm_params),
        "trunk_outputs_once_s_per_crop": round(collect / b, 3),
        "step_speedup": round(whole / alone, 2),
    }))


if __name__ == "__main__":
    main()
