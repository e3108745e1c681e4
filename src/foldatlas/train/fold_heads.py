"""Refit a trained folding model's pLDDT head on its own predictions, everything else frozen.

The pLDDT head of an ESMFold-architecture model is three linear layers on the structure module's last state per
residue (``EsmForProteinFolding.lddt_head``), trained with the other losses. Fine-tuning the trunk for geometry
(issue 21) moved those states while the head's share of the loss stayed small, and its pLDDT stopped tracking the
error (the embedded model's card: per-chain Pearson r of mean pLDDT with lDDT-Ca 0.43, then 0.20, then 0.02).
Refitting the head alone is cheap and cannot change a structure: fold each chain once exactly as a user's fold
runs (``foldatlas.api.fold``'s path: the model's own recycles, float32 on CPUs), keep the states the head reads and
the per-residue lDDT-Ca of the prediction against the experiment, then fit the head on those pairs (cross-entropy
over its 50 bins, as in training; every atom slice toward its residue's lDDT-Ca, so the B-factors of all atoms
agree), keeping the epoch with the lowest validation loss. The head is linear (transformers' architecture, kept so
that the checkpoint loads unchanged), which limits how much of the error it can read from the states.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from foldatlas.files import atomic_write_text

__all__ = ["collect_head_data", "fit_lddt_head", "chain_calibration", "residue_calibration", "refit_lddt_head"]


def collect_head_data(model: str, chains: list[dict], log=print) -> list[dict]:
    """Fold each chain with ``model`` and keep what the pLDDT head reads and what it should predict.

    Parameters
    ----------
    model : str
        Folding model (name, hub id or folder) of the ESMFold v1 architecture.
    chains : list of dict
        ``id``, ``sequence`` and ``coords`` (``[L, >=2, 3]``, C-alpha at index 1, NaN where unobserved), as
        :meth:`foldatlas.train.data.StructureSet.chain` gives them.

    Returns
    -------
    list of dict
        Per chain ``id``, ``states`` (``[L, d]`` float32: the structure module's last state, the head's input),
        ``lddt`` (``[L]``, per-residue lDDT-Ca of the prediction on 0-1), ``mask`` (``[L]`` bool: residues
        observed in the experiment) and ``plddt`` (``[L]``, the model's own pLDDT, 0-100).
    """
    import torch

    from foldatlas.api import load_model
    from foldatlas.predict.engine import FoldOptions, fold_batch
    from foldatlas.seq.records import make_record
    from foldatlas.train.fold_losses import lddt_ca_per_residue

    folding_model = load_model(model, device="cpu")
    head = folding_model.model.lddt_head
    seen: list = []
    hook = head.register_forward_pre_hook(lambda module, args: seen.append(args[0][-1, 0].detach().float().cpu()))
    out = []
    started = time.time()
    try:
        for k, c in enumerate(chains):
            seen.clear()
            pred = fold_batch(folding_model, [make_record("chain", c["sequence"])], FoldOptions())[0]  # as fold()
            n = len(c["sequence"])
            if len(seen) != 1 or seen[0].shape[0] != n:
                raise RuntimeError(f"{c['id']}: the pLDDT head's input was not seen once for {n} residues")
            true_ca = np.asarray(c["coords"][:, 1], dtype=np.float64)
            mask = np.isfinite(true_ca).all(-1)
            lddt = lddt_ca_per_residue(torch.as_tensor(pred.positions[None, :, 1], dtype=torch.float64),
                                       torch.as_tensor(np.nan_to_num(true_ca)[None]),
                                       torch.as_tensor(mask[None], dtype=torch.float64))[0].numpy()
            out.append({"id": c["id"], "states": seen[0].numpy(), "lddt": lddt.astype(np.float32), "mask": mask,
                        "plddt": np.asarray(pred.plddt, dtype=np.float32)})
            if (k + 1) % 50 == 0 or k + 1 == len(chains):
                log(f"folded {k + 1}/{len(chains)} chains ({time.time() - started:.0f} s)")
    finally:
        hook.remove()
    return out


def chain_calibration(plddt: list[np.ndarray], data: list[dict]) -> dict:
    """Per-chain agreement of mean pLDDT with mean lDDT-Ca over the residues observed in the experiment.

    Parameters
    ----------
    plddt : list of ndarray
        Per chain, per-residue pLDDT on 0-100.
    data : list of dict
        :func:`collect_head_data` output for the same chains (``lddt``, ``mask``).

    Returns
    -------
    dict
        ``pearson_r`` (None for fewer than three chains or a constant), ``mae`` and ``bias`` (mean of pLDDT minus
        100 x lDDT-Ca), ``chains``.
    """
    p = np.array([float(x[d["mask"]].mean()) for x, d in zip(plddt, data)])
    t = np.array([100.0 * float(d["lddt"][d["mask"]].mean()) for d in data])
    r = float(np.corrcoef(p, t)[0, 1]) if len(p) > 2 and p.std() > 0 and t.std() > 0 else None
    return {"pearson_r": r, "mae": float(np.abs(p - t).mean()), "bias": float((p - t).mean()), "chains": len(p)}


def residue_calibration(plddt: list[np.ndarray], data: list[dict]) -> dict:
    """Per-residue agreement of pLDDT with lDDT-Ca over the residues observed in the experiment (parameters as
    :func:`chain_calibration`'s).

    Returns
    -------
    dict
        ``pearson_r``, ``mae`` (pLDDT points), and ``quintiles``: per fifth of the residues by pLDDT, their mean
        pLDDT and mean 100 x lDDT-Ca (a reliability diagram: the two agree where pLDDT is calibrated).
    """
    p = np.concatenate([x[d["mask"]] for x, d in zip(plddt, data)]).astype(np.float64)
    t = 100.0 * np.concatenate([d["lddt"][d["mask"]] for d in data]).astype(np.float64)
    order = np.array_split(np.argsort(p, kind="stable"), 5)
    return {"pearson_r": float(np.corrcoef(p, t)[0, 1]) if p.std() > 0 and t.std() > 0 else None,
            "mae": float(np.abs(p - t).mean()),
            "quintiles": [[round(float(p[k].mean()), 2), round(float(t[k].mean()), 2)] for k in order if len(k)]}


def _predict_plddt(head, data: list[dict]) -> list[np.ndarray]:
    """pLDDT (0-100) of the C-alpha slice, by transformers' own ``categorical_lddt`` (as the model's forward)."""
    import torch
    from transformers.models.esm.modeling_esmfold import categorical_lddt

    from foldatlas.train.fold_losses import PLDDT_BINS

    with torch.no_grad():
        return [(100.0 * categorical_lddt(head(torch.as_tensor(d["states"])).reshape(len(d["states"]), 37, -1),
                                          bins=PLDDT_BINS)[:, 1]).numpy() for d in data]


def _stack(data: list[dict]):
    import torch

    from foldatlas.train.fold_losses import plddt_bins

    x = torch.as_tensor(np.concatenate([d["states"][d["mask"]] for d in data]))
    y = plddt_bins(torch.as_tensor(np.concatenate([d["lddt"][d["mask"]] for d in data])))
    return x, y


def _loss(head, x, y, atoms: int = 37):
    import torch

    logits = head(x).reshape(len(x), atoms, -1)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.repeat_interleave(atoms))


def fit_lddt_head(head, train: list[dict], valid: list[dict], epochs: int = 30, lr: float = 1e-3,
                  batch: int = 2048, seed: int = 0, log=print) -> dict:
    """Fit ``head`` (in place) on :func:`collect_head_data` output; keep the epoch of lowest validation loss.

    Parameters
    ----------
    head : torch.nn.Module
        An ``EsmForProteinFolding.lddt_head`` (states ``[N, d]`` in, ``[N, 37 x bins]`` logits out).
    train, valid : list of dict
        :func:`collect_head_data` output to fit on and to choose the epoch by.
    epochs, lr, batch, seed
        Adam with a cosine schedule over ``epochs``, minibatches of ``batch`` residues, seeded order.
    log : callable

    Returns
    -------
    dict
        Validation loss, per-chain calibration (:func:`chain_calibration`) and per-residue calibration
        (:func:`residue_calibration`, under ``residues``) before and after, the epoch kept, and each epoch's
        losses.
    """
    import copy

    import torch

    torch.manual_seed(seed)
    x, y = _stack(train)
    vx, vy = _stack(valid)
    with torch.no_grad():
        start = _predict_plddt(head, valid)
        before = {"valid_loss": float(_loss(head, vx, vy)), **chain_calibration(start, valid),
                  "residues": residue_calibration(start, valid),
                  # the head on the kept states gives the fold's own pLDDT: the right states were kept
                  "max_diff_to_fold_plddt": float(max(np.abs(a - d["plddt"]).max() for a, d in zip(start, valid)))}
    best, best_state, best_epoch = before["valid_loss"], copy.deepcopy(head.state_dict()), 0
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    curve = []
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        head.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for a in range(0, len(x), batch):
            idx = order[a:a + batch]
            loss = _loss(head, x[idx], y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        head.eval()
        with torch.no_grad():
            v = float(_loss(head, vx, vy))
        curve.append({"epoch": epoch, "train_loss": round(total / len(x), 4), "valid_loss": round(v, 4)})
        if v < best:
            best, best_state, best_epoch = v, copy.deepcopy(head.state_dict()), epoch
        log(f"epoch {epoch}: train {total / len(x):.4f} valid {v:.4f}")
    head.load_state_dict(best_state)
    end = _predict_plddt(head, valid)
    after = {"valid_loss": best, **chain_calibration(end, valid), "residues": residue_calibration(end, valid)}
    return {"before": before, "after": after, "epoch": best_epoch, "curve": curve,
            "train_residues": len(x), "valid_residues": len(vx)}


def refit_lddt_head(model: str, data_dir: str | Path, out: str | Path, train_chains: int = 1500,
                    valid_chains: int = 300, max_length: int = 300, epochs: int = 30, seed: int = 0,
                    training_run: str | Path | None = None, log=print) -> dict:
    """Refit ``model``'s pLDDT head (see the module docstring) and write a run folder ``out``.

    ``out/model`` is the model with the new head (everything else unchanged, float32); ``out/head_refit.json``
    holds the settings and numbers and ``out/head_refit_log.jsonl`` the epochs. ``training_run``, the run folder
    the model's trunk came from, lends its ``config.json`` and ``log.jsonl``, so that ``foldatlas train
    fold-release --run out`` writes a card describing both. Chains are drawn at random (``seed``) from the training
    and validation splits of ``foldatlas train data`` among those of 40 to ``max_length`` residues; the folds are
    cached in ``out/head_data.npz`` so a second call skips them.

    Returns
    -------
    dict
        The contents of ``head_refit.json``: settings, :func:`fit_lddt_head`'s numbers, seconds.
    """
    import shutil

    import torch
    from transformers import EsmForProteinFolding

    from foldatlas.models.loading import from_pretrained_quietly
    from foldatlas.models.registry import resolve_model
    from foldatlas.train.data import load_structures
    from foldatlas.train.lm import write_tokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    resolved = resolve_model(model)
    started = time.time()
    rng = np.random.default_rng(seed)
    sets = {}
    for split, count in (("train", train_chains), ("valid", valid_chains)):
        structures = load_structures(Path(data_dir) / f"structures_{split}.npz")
        lengths = np.diff(structures.offsets)
        ok = np.nonzero((lengths >= 40) & (lengths <= max_length))[0]
        pick = sorted(rng.choice(ok, size=min(count, len(ok)), replace=False).tolist())
        sets[split] = [structures.chain(k) for k in pick]
    cache = out / "head_data.npz"
    data = _load_cache(cache, sets)
    if data is None:
        data = {split: collect_head_data(str(resolved.path), chains, log=log) for split, chains in sets.items()}
        _save_cache(cache, data)
    fold_seconds = round(time.time() - started, 1)
    model_obj = from_pretrained_quietly(EsmForProteinFolding, resolved.path, resolved.name, dtype=torch.float32)
    result = fit_lddt_head(model_obj.lddt_head, data["train"], data["valid"], epochs=epochs, seed=seed, log=log)
    model_obj.save_pretrained(str(out / "model"), safe_serialization=True)
    write_tokenizer(out / "model")
    if training_run is not None:
        for name in ("config.json", "log.jsonl"):
            shutil.copyfile(Path(training_run) / name, out / name)
    summary = {"model": resolved.name, "train_chains": len(data["train"]), "valid_chains": len(data["valid"]),
               "max_length": max_length, "epochs": epochs, "seed": seed,
               **{k: v for k, v in result.items() if k != "curve"},
               "fold_seconds": fold_seconds, "seconds": round(time.time() - started, 1)}
    atomic_write_text(out / "head_refit_log.jsonl", "".join(json.dumps(row) + "\n" for row in result["curve"]))
    atomic_write_text(out / "head_refit.json", json.dumps(summary, indent=2))
    return summary


def _save_cache(path: Path, data: dict[str, list[dict]]) -> None:
    arrays = {}
    for split, rows in data.items():
        arrays[f"{split}_ids"] = np.array([r["id"] for r in rows])
        arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([len(r["lddt"]) for r in rows])])
        for key in ("states", "lddt", "mask", "plddt"):
            arrays[f"{split}_{key}"] = np.concatenate([r[key] for r in rows])
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _load_cache(path: Path, sets: dict[str, list[dict]]) -> dict[str, list[dict]] | None:
    if not path.is_file():
        return None
    z = np.load(path)
    data = {}
    for split, chains in sets.items():
        if f"{split}_ids" not in z or list(z[f"{split}_ids"]) != [c["id"] for c in chains]:
            return None
        off = z[f"{split}_offsets"]
        arrays = {key: z[f"{split}_{key}"] for key in ("states", "lddt", "mask", "plddt")}  # each read once
        data[split] = [{"id": str(i), **{key: a[off[k]:off[k + 1]] for key, a in arrays.items()}}
                       for k, i in enumerate(z[f"{split}_ids"])]
    return data
