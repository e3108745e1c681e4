"""Amber relaxation of a folding model's predictions: geometry before and after, C-alpha RMSD, seconds per residue.

Folds the 19 CASP14 domains (``../shared/eval/structure``) and, with ``--data``, the first test-split chains of
``foldatlas train data`` with one model, relaxes every prediction with ``foldatlas.structure.relax`` (the code
behind ``fold --relax``) and prints JSON: per structure and in the mean, chain breaks per 100 residues,
clashscore, bond and angle outliers before and after, C-alpha RMSD to the unrelaxed model, rounds, seconds and
seconds per residue (relaxation only; folding is not timed)::

    python benchmarks/structure/bench_relax.py --model foldatlas-fold-small --threads 2 > relax.json
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

import numpy as np


def _targets(eval_dir: Path, data_dir: Path | None, test_chains: int) -> list[tuple[str, str, str]]:
    from foldatlas.train.fold_eval import truth_from_file

    out = [("casp14", r["id"], truth_from_file(eval_dir / r["file"])[0])
           for r in csv.DictReader(open(eval_dir / "targets.tsv"), delimiter="\t")]
    if data_dir is not None and test_chains:
        from foldatlas.train.data import load_structures

        test = load_structures(data_dir / "structures_test.npz")
        chains = [test.chain(k) for k in range(len(test))]
        out += [("test", c["id"], c["sequence"]) for c in chains if len(c["sequence"]) <= 400][:test_chains]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="foldatlas-fold-small")
    ap.add_argument("--eval", type=Path, default=Path(__file__).resolve().parents[3] / "shared/eval/structure")
    ap.add_argument("--data", type=Path, default=None, help="'foldatlas train data' folder (its test split).")
    ap.add_argument("--test-chains", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cutoff", type=float, default=None, help="Non-bonded cut-off, A (default: none).")
    ap.add_argument("--limit", type=int, default=None, help="Relax only the first N structures.")
    args = ap.parse_args(argv)

    import torch

    from foldatlas.api import fold
    from foldatlas.structure.geometry import geometry_report
    from foldatlas.structure.relax import RelaxOptions, relax_structure

    torch.set_num_threads(args.threads)
    rows = []
    for group, name, seq in _targets(args.eval, args.data, args.test_chains)[:args.limit]:
        pred = fold(seq, model=args.model, device="cpu")
        atoms = pred.to_atoms()
        started = time.time()
        res = relax_structure(atoms, RelaxOptions(threads=args.threads, cutoff=args.cutoff))
        seconds = time.time() - started
        b, a = geometry_report(atoms), res.after
        rows.append({"set": group, "id": name, "length": len(seq), "breaks_per_100_before": b.breaks_per_100,
                     "breaks_per_100_after": a.breaks_per_100, "clashscore_before": b.clashscore,
                     "clashscore_after": a.clashscore,
                     "bond_outliers_pct_before": 100 * b.bond_outliers / max(1, b.bonds_checked),
                     "bond_outliers_pct_after": 100 * a.bond_outliers / max(1, a.bonds_checked),
                     "angle_outliers_pct_before": 100 * b.angle_outliers / max(1, b.angles_checked),
                     "angle_outliers_pct_after": 100 * a.angle_outliers / max(1, a.angles_checked),
                     "ca_rmsd": res.ca_rmsd, "rounds": res.rounds, "seconds": round(seconds, 2),
                     "seconds_per_residue": round(seconds / len(seq), 4)})
        print(json.dumps(rows[-1]), flush=True)
    keys = [k for k in rows[0] if k not in ("set", "id", "length")]
    summary = {group: {"n": sum(r["set"] == group for r in rows),
                       **{k: round(float(np.mean([r[k] for r in rows if r["set"] == group])), 4) for k in keys}}
               for group in dict.fromkeys(r["set"] for r in rows)}
    print(json.dumps({"benchmark": "relax", "model": args.model, "threads": args.threads, "cutoff": args.cutoff,
                      "machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d"),
                      "summary": summary, "rows": rows}))


if __name__ == "__main__":
    main()
