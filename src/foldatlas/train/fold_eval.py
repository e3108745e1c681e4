"""Evaluation of a folding model against experimental structures, with baselines.

One script scores a model and two baselines the same way, on the test split of
``foldatlas train data`` and on the evaluation domains (``../shared/eval/structure``):

* the model; an ideal alpha-helix of the same length; the same architecture
  untrained (random trunk and heads over the same language model);
* TM-score (TM-align through tmtools, normalised by the experimental chain) and
  lDDT-Ca, residues matched one to one (the folded sequence is the observed one);
* pLDDT calibration: Pearson correlation of mean pLDDT with true lDDT-Ca per chain;
* three-state secondary structure (H: H/G/I, E: E/B, C: the rest) of the
  prediction (DSSP on its backbone, pydssp) against DSSP of the experiment;
* geometry of the prediction (:func:`foldatlas.structure.geometry.geometry_report`):
  chain breaks per 100 residues, backbone bond and angle outliers, clashscore.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["three_state", "ideal_helix_ca", "backbone_ss", "score_model", "evaluate_fold", "untrained_twin",
           "truth_from_file"]

_THREE = {"H": "H", "G": "H", "I": "H", "E": "E", "B": "E"}


def three_state(dssp: str) -> str:
    """Map 8-state DSSP letters to H / E / C."""
    return "".join(_THREE.get(c, "C") for c in dssp)


def ideal_helix_ca(n: int) -> np.ndarray:
    """C-alpha trace of an ideal alpha-helix (1.5 A rise, 100 degrees per residue, radius 2.3 A)."""
    k = np.arange(n)
    t = np.deg2rad(100.0) * k
    return np.stack([2.3 * np.cos(t), 2.3 * np.sin(t), 1.5 * k], -1)


def backbone_ss(backbone: np.ndarray) -> str:
    """Three-state DSSP of a backbone ``[L, 4, 3]`` (N, CA, C, O) with pydssp."""
    from foldatlas.train.sources import require_extra

    pydssp = require_extra("pydssp", "pydssp")
    ss = pydssp.assign(np.asarray(backbone, dtype=np.float64), out_type="c3")
    return "".join("C" if c == "-" else str(c) for c in ss)


def _tm_lddt(pred_ca: np.ndarray, true_ca: np.ndarray, seq: str) -> tuple[float, float]:
    import tmtools

    from foldatlas.structure.metrics import lddt

    res = tmtools.tm_align(np.ascontiguousarray(pred_ca, dtype=np.float64),
                           np.ascontiguousarray(true_ca, dtype=np.float64), seq, seq)
    return float(res.tm_norm_chain2), float(lddt(pred_ca, true_ca))


def untrained_twin(model_dir: str | Path, out_dir: str | Path, seed: int = 0) -> Path:
    """The same architecture with random trunk and heads over the trained model's language model."""
    import torch
    from transformers import EsmConfig, EsmForProteinFolding

    from foldatlas.models.loading import load_folding_model
    from foldatlas.train.lm import write_tokenizer

    trained = load_folding_model(str(model_dir), device="cpu", lean_trunk=False).model
    torch.manual_seed(seed)
    twin = EsmForProteinFolding(EsmConfig(**trained.config.to_dict()))
    twin.esm.load_state_dict(trained.esm.state_dict())
    out = Path(out_dir)
    twin.save_pretrained(str(out), safe_serialization=True)
    write_tokenizer(out)
    return out


def truth_from_file(path: Path) -> tuple[str, np.ndarray]:
    """Sequence and ``[L, 4, 3]`` N/CA/C/O (NaN where missing) of a one-chain structure file, in file order."""
    import biotite.structure as struc

    from foldatlas.seq.alphabet import RESTYPE_3TO1
    from foldatlas.structure.io import read_structure

    atoms = read_structure(path)
    atoms = atoms[struc.filter_amino_acids(atoms) & ~atoms.hetero]
    starts = struc.get_residue_starts(atoms)
    bb = np.full((len(starts), 4, 3), np.nan)
    seq = []
    for r, (a, b) in enumerate(zip(starts, list(starts[1:]) + [len(atoms)])):
        res = atoms[a:b]
        seq.append(RESTYPE_3TO1.get(res.res_name[0], "X"))
        for k, name in enumerate(("N", "CA", "C", "O")):
            hit = res.coord[res.atom_name == name]
            if len(hit):
                bb[r, k] = hit[0]
    return "".join(seq), bb


def score_model(model: str, targets: list[dict], log=print) -> dict:
    """Fold each target with ``model`` and score it; also score the ideal helix.

    Parameters
    ----------
    model : str
        Folding model (name, hub id or folder).
    targets : list of dict
        ``id``, ``sequence``, ``backbone`` (``[L, 4, 3]``, NaN where missing)
        and ``ss`` (three-state DSSP of the experiment, or None).

    Returns
    -------
    dict
        Per-target rows and means.
    """
    from foldatlas.api import fold
    from foldatlas.structure.geometry import geometry_report

    rows = []
    for t in targets:
        pred = fold(t["sequence"], model=model, device="cpu")
        ok = ~np.isnan(t["backbone"][:, 1]).any(-1)
        true_ca = t["backbone"][ok, 1]
        pred_bb = pred.positions[:, [0, 1, 2, 4]]  # atom37: N, CA, C, O
        seen = "".join(c for c, k in zip(t["sequence"], ok) if k)
        tm, ld = _tm_lddt(pred_bb[ok, 1], true_ca, seen)
        htm, hld = _tm_lddt(ideal_helix_ca(len(t["sequence"]))[ok], true_ca, seen)
        row = {"id": t["id"], "length": len(t["sequence"]), "tm_score": tm, "lddt_ca": ld,
               "mean_plddt": float(pred.plddt.mean()), "ptm": float(pred.ptm), "helix_tm_score": htm,
               "helix_lddt_ca": hld}
        geo = geometry_report(pred.to_atoms())
        row.update(breaks_per_100=geo.breaks_per_100, clashscore=geo.clashscore,
                   bond_outliers_pct=100 * geo.bond_outliers / max(1, geo.bonds_checked),
                   angle_outliers_pct=100 * geo.angle_outliers / max(1, geo.angles_checked))
        if t.get("ss"):
            pss = backbone_ss(pred_bb)
            row["ss_agreement"] = float(np.mean([a == b for a, b in zip(pss, t["ss"])]))
            row["helix_ss_agreement"] = float(np.mean([c == "H" for c in t["ss"]]))
        rows.append(row)
        log(f"{t['id']}: TM {tm:.3f} lDDT {ld:.3f} pLDDT {row['mean_plddt']:.1f} "
            f"breaks/100 {geo.breaks_per_100:.1f} clashscore {geo.clashscore:.0f}")
    means = {k: float(np.mean([r[k] for r in rows if k in r])) for k in rows[0] if k not in ("id", "length")}
    plddt, true = np.array([r["mean_plddt"] for r in rows]), np.array([r["lddt_ca"] for r in rows])
    means["plddt_pearson"] = float(np.corrcoef(plddt, true)[0, 1]) if len(rows) > 2 and plddt.std() > 0 else None
    return {"n": len(rows), "mean": means, "rows": rows}


def evaluate_fold(model: str, data_dir: str | Path | None, eval_dir: str | Path | None,
                  test_chains: int | None = None, max_length: int = 400, log=print, untrained: bool = True) -> dict:
    """Model, ideal helix and untrained twin on the test split and the evaluation domains.

    Parameters
    ----------
    untrained : bool
        Also fold every chain with the untrained twin (doubles the time); False scores the model alone, e.g. to
        screen candidates.

    Returns
    -------
    dict
        ``{"test": {...}, "casp14": {...}}`` each with ``model`` and (unless ``untrained`` is False)
        ``untrained`` results (the helix is inside each result's rows/means).
    """
    import csv

    from foldatlas.models.registry import resolve_model
    from foldatlas.train.data import load_structures

    started = time.time()
    sets: dict[str, list[dict]] = {}
    if data_dir:
        test = load_structures(Path(data_dir) / "structures_test.npz")
        chains = [test.chain(k) for k in range(len(test))]
        chains = [c for c in chains if len(c["sequence"]) <= max_length][:test_chains]
        sets["test"] = [{"id": c["id"], "sequence": c["sequence"], "backbone": c["coords"][:, :4].astype(float),
                         "ss": three_state(c["dssp"])} for c in chains]
    if eval_dir:
        rows = list(csv.DictReader(open(Path(eval_dir) / "targets.tsv"), delimiter="\t"))
        targets = []
        for r in rows:
            seq, bb = truth_from_file(Path(eval_dir) / r["file"])
            ok = ~np.isnan(bb).any((1, 2))
            ss = backbone_ss(np.nan_to_num(bb)) if ok.all() else None
            targets.append({"id": r["id"], "sequence": seq, "backbone": bb, "ss": ss})
        sets["casp14"] = targets
    resolved = resolve_model(model)
    results: dict = {"model": resolved.name}
    with tempfile.TemporaryDirectory(prefix="foldatlas-untrained-") as tmp:
        twin = untrained_twin(resolved.path, tmp) if untrained else None
        for name, targets in sets.items():
            log(f"{name}: {len(targets)} chains")
            results[name] = {"model": score_model(str(resolved.path), targets, log=log)}
            if twin is not None:
                results[name]["untrained"] = score_model(str(twin), targets, log=lambda m: None)
    results["seconds"] = round(time.time() - started, 1)
    return results
