"""Zero-shot variant effects against a deep mutational scan: Spearman correlation per scoring method. Prints JSON.

Scores every single substitution of the TEM-1 beta-lactamase scan (BLAT_ECOLX, Ranganathan 2015, fitness at
2,500 ug/ml ampicillin, in ``../shared/eval/variants``) with the masked marginal and the wild-type marginal, and a
seeded sample of them with the pseudo-log-likelihood (L forward passes per variant), then correlates each with the
measured fitness. Also reports the correlation of the scan's own baseline columns (the independent-site and
pairwise models of EVmutation, the DeepSequence VAE) on the same variants, for scale. Usage::

    python benchmarks/lm/bench_variants.py [--model foldatlas-lm-small] [--pll-sample 40]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np

EVAL = Path(__file__).resolve().parents[3] / "shared" / "eval" / "variants"


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(a) & np.isfinite(b)
    return round(float(spearmanr(a[keep], b[keep]).statistic), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="foldatlas-lm-small")
    parser.add_argument("--eval", type=Path, default=EVAL)
    parser.add_argument("--pll-sample", type=int, default=40, help="Variants scored by pseudo-log-likelihood")
    parser.add_argument("--max-tokens", type=int, default=8192)
    parser.add_argument("--limit", type=int, default=None, help="Score only the first N variants (smoke runs)")
    args = parser.parse_args()

    from foldatlas.lm import load_lm, parse_variants, score_variants

    meta = next(r for r in csv.DictReader(open(args.eval / "datasets.tsv"), delimiter="\t")
                if r["dataset"] == "BLAT_ECOLX_Ranganathan2015")
    wt, offset = meta["wt_sequence"], int(meta["first_resnum"])
    singles = [r for r in csv.DictReader(open(args.eval / "BLAT_ECOLX_Ranganathan2015.singles.tsv"), delimiter="\t")
               if r["is_synonymous"] == "0"][:args.limit]
    fitness = np.array([float(r["score"]) for r in singles])
    variants = parse_variants([r["mutant"] for r in singles], wt, offset)
    lm = load_lm(args.model)
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "date": date.today().isoformat(),
           "model": lm.name, "dataset": "BLAT_ECOLX_Ranganathan2015 (fitness column 2500)",
           "variants": len(variants), "length": len(wt)}
    start = time.perf_counter()
    rows = score_variants(lm, wt, variants, ("masked_marginal", "wt_marginal"), args.max_tokens)
    out["seconds_masked_and_wt_marginal"] = round(time.perf_counter() - start, 1)
    out["spearman"] = {m: spearman([r[m] for r in rows], fitness) for m in ("masked_marginal", "wt_marginal")}
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(len(variants), min(args.pll_sample, len(variants)), replace=False))
    start = time.perf_counter()
    pll = score_variants(lm, wt, [variants[i] for i in sample], ("pll",), args.max_tokens)
    out["seconds_pll_sample"] = round(time.perf_counter() - start, 1)
    out["pll_sample"] = int(len(sample))
    out["spearman"]["pll_on_sample"] = spearman([r["pll"] for r in pll], fitness[sample])
    out["spearman"]["masked_marginal_on_same_sample"] = spearman([rows[i]["masked_marginal"] for i in sample],
                                                                 fitness[sample])
    # the scan file's own baseline predictions, same variants
    full = {r["mutant"]: r for r in csv.DictReader(open(args.eval / "BLAT_ECOLX_Ranganathan2015.csv",
                                                        encoding="utf-8-sig"))}
    for column in ("mutation_effect_prediction_independent", "mutation_effect_prediction_pairwise",
                   "mutation_effect_prediction_vae_ensemble"):
        values = [float(full[r["mutant"]][column]) if full.get(r["mutant"], {}).get(column) else np.nan
                  for r in singles]
        out.setdefault("baselines_spearman", {})[column.replace("mutation_effect_prediction_", "")] = \
            spearman(values, fitness)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
