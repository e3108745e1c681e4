"""Fine-tune a folding model's structure module alone, on cached trunk outputs: geometry training a CPU can afford.

Where a prediction's backbone breaks is decided in the structure module: it places each residue's frame and the
torsions that put C and N, so AlphaFold's violation losses (:func:`foldatlas.train.fold_losses.structural_violations`)
act on it alone. Fine-tuning the whole model spends most of each step in the frozen language model and the folding
trunk; with both frozen, their output for a crop never changes, so it is computed once: every training crop is
folded once exactly as inference folds it (the model's own recycles, float32), and what the structure module reads
on the last pass (its single and pair inputs, float16) is kept. Each training step then runs the structure module
alone (forward and backward, dropout off as at inference: :func:`foldatlas.train.fold.without_dropout`) on a batch of kept crops with
FAPE and the violation losses, and the pLDDT head, which reads the structure module's states, with its loss; the
distogram and PAE heads read the trunk alone and stay as they are. :mod:`foldatlas.train.fold_heads` can refit the pLDDT head afterwards on whole folds.

What this cannot do: at inference the structure module's first-pass output feeds the next pass through the
recycled distogram, so the trunk's last output moves a little with the new structure module; the cache keeps the
old one. Validation during the run and the release's evaluation fold with the whole model, so they see it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from foldatlas.files import atomic_write_text
from foldatlas.train.checkpoints import has_training_state, load_training_state, save_training_state
from foldatlas.train.fold import (FoldTrainConfig, _clear_openfold_caches, _log_writer, _training_sets, _validate,
                                  after_step, build_fold_model, chain_batch, chains_at_least, eval_mode,
                                  without_dropout)
from foldatlas.train.schedule import warmup_cosine_lr

__all__ = ["collect_structure_inputs", "structure_module_outputs", "train_structure_module", "long_batch_size",
           "is_long_step"]

CACHE_NAME = "structure_inputs.npz"
LONG_CACHE_NAME = "structure_inputs_long.npz"


def collect_structure_inputs(model, chains: list[dict], crop: int, batch_size: int = 8, seed: int = 0,
                             log=print) -> dict[str, np.ndarray]:
    """Fold random crops of ``chains`` and keep what the structure module reads on the last pass.

    Parameters
    ----------
    model : transformers.EsmForProteinFolding
        The folding model (float32); run without gradients, with its default recycles, as inference runs it.
    chains : list of dict
        ``sequence`` and ``coords`` (``[L, 5, 3]``: N, CA, C, O, C-beta) per chain.
    crop : int
        Residues per crop (longer chains: a random contiguous window; shorter ones padded).
    batch_size : int
        Crops folded together.
    seed : int
        Seeds the windows.

    Returns
    -------
    dict
        ``single`` ``[N, crop, c_s]`` and ``pair`` ``[N, crop, crop, c_z]`` (float16), ``aatype`` ``[N, crop]``,
        ``mask`` ``[N, crop]`` (1 for real residues) and ``coords`` ``[N, crop, 5, 3]`` (float32).
    """
    import torch

    rng = np.random.default_rng(seed)
    device = next(model.parameters()).device
    sm = model.trunk.structure_module
    seen: list = []
    hook = sm.register_forward_pre_hook(lambda module, args: seen.append(args))
    parts: dict[str, list] = {k: [] for k in ("single", "pair", "aatype", "mask", "coords")}
    started = time.time()
    try:
        for k in range(0, len(chains), batch_size):
            aatype, mask, coords, residx = chain_batch(chains[k:k + batch_size], crop, rng, pad_to=crop)
            aatype, mask, residx = aatype.to(device), mask.to(device), residx.to(device)
            seen.clear()
            with eval_mode(model), torch.no_grad():
                model(input_ids=aatype, attention_mask=mask, position_ids=residx)
            evo = seen[-1][0]
            parts["single"].append(evo["single"].to(torch.float16).cpu().numpy())
            parts["pair"].append(evo["pair"].to(torch.float16).cpu().numpy())
            parts["aatype"].append(aatype.cpu().numpy().astype(np.int8))
            parts["mask"].append(mask.cpu().numpy().astype(np.int8))
            parts["coords"].append(coords.numpy().astype(np.float32))
            done = min(k + batch_size, len(chains))
            if done % (25 * batch_size) < batch_size or done == len(chains):
                log(f"trunk outputs of {done}/{len(chains)} crops ({time.time() - started:.0f} s)")
    finally:
        hook.remove()
    return {k: np.concatenate(v) for k, v in parts.items()}


def structure_module_outputs(model, single, pair, aatype, mask):
    """Run ``model``'s structure module on its inputs and return what the folding losses read.

    Returns
    -------
    types.SimpleNamespace
        ``frames``, ``positions``, ``unnormalized_angles``, ``states``, ``atom14_atom_exists`` and ``lddt_head``,
        shaped as ``EsmForProteinFolding``'s outputs.
    """
    from types import SimpleNamespace

    from transformers.models.esm.modeling_esmfold import make_atom14_masks

    st = model.trunk.structure_module({"single": single, "pair": pair}, aatype, mask.float())
    st["aatype"] = aatype
    make_atom14_masks(st)
    b_, l_ = aatype.shape
    lddt = model.lddt_head(st["states"]).reshape(st["states"].shape[0], b_, l_, -1, model.lddt_bins)
    return SimpleNamespace(frames=st["frames"], positions=st["positions"], states=st["states"],
                           unnormalized_angles=st["unnormalized_angles"], lddt_head=lddt,
                           atom14_atom_exists=st["atom14_atom_exists"] * mask[..., None])


def _load_cache(path: Path, model, train, pool: list[int], crops: int, crop: int, cfg: FoldTrainConfig,
                log) -> dict:
    """The kept trunk outputs at ``path``, or ``crops`` new ones of ``crop`` residues (one per chain of ``pool``)."""
    crops = min(crops, len(pool))  # one crop per chain
    if path.is_file():
        with np.load(path) as z:
            cache = {k: z[k] for k in z.files}
        if len(cache["aatype"]) != crops or cache["aatype"].shape[1] != crop:
            raise ValueError(f"{path} holds {len(cache['aatype'])} crops of {cache['aatype'].shape[1]}, the run asks "
                             f"for {crops} of {crop}: use another run folder")
        log(f"{crops} cached crops of {crop} read from {path}")
        return cache
    rng = np.random.default_rng((cfg.seed, 7))
    picked = rng.choice(len(pool), size=crops, replace=False)
    chains = [train.chain(int(pool[i])) for i in picked]
    cache = collect_structure_inputs(model, chains, crop, batch_size=cfg.batch_size, seed=cfg.seed, log=log)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **cache)
    os.replace(tmp, path)
    return cache


def long_batch_size(cfg: FoldTrainConfig) -> int:
    """Crops of ``cfg.long_crop`` in a long batch: about as many residues as a batch of ``cfg.crop``."""
    return max(1, round(cfg.batch_size * cfg.crop / cfg.long_crop))


def is_long_step(step: int, cfg: FoldTrainConfig) -> bool:
    """Whether step ``step`` (0-based) trains on the long crops: every ``cfg.long_every``-th step when there are any."""
    return cfg.long_crop > 0 and step % cfg.long_every == cfg.long_every - 1


def train_structure_module(data_dir: str | Path, out_dir: str | Path, cfg: FoldTrainConfig, crops: int = 1600,
                           log=print, until: int | None = None, long_crops: int = 240) -> Path | None:
    """Fine-tune ``cfg.init``'s structure module on ``crops`` cached trunk outputs (resumable, seeded).

    Parameters
    ----------
    data_dir : path
        Folder written by ``foldatlas train data``.
    out_dir : path
        Run folder: ``structure_inputs.npz`` (the cache), ``state/``, ``log.jsonl``, ``config.json`` and, when
        ``cfg.steps`` are done, ``model/`` (the whole folding model, for ``fold-release``).
    cfg : FoldTrainConfig
        ``init`` (required) names the model; ``crop``, ``batch_size``, ``steps``, ``lr``, the schedule, the
        loss weights, ``eval_every``/``eval_chains`` and ``time_limit`` apply as in
        :func:`foldatlas.train.fold.train_fold`.
    crops : int
        Training crops folded once and kept (one random window per chain, chains drawn without repeats).
    log : callable
    until : int, optional
        Stop (with a checkpoint) at this step; a later call resumes.
    long_crops : int
        With ``cfg.long_crop``: crops of that length, from chains at least that long, kept in
        ``structure_inputs_long.npz``; every ``cfg.long_every``-th step trains on :func:`long_batch_size` of them
        instead of ``cfg.batch_size`` short ones, so that one run learns long chains without unlearning short ones.

    Returns
    -------
    Path or None
        The model folder once ``cfg.steps`` are done.
    """
    import torch

    from foldatlas.train.fold_losses import folding_losses
    from foldatlas.train.lm import save_model_folder

    if not cfg.init:
        raise ValueError("the structure module alone is fine-tuned from a trained model: give init")
    data, out = Path(data_dir), Path(out_dir)
    train, pool, valid = _training_sets(data, cfg)
    long_pool = chains_at_least(train, cfg.long_crop, "long_crop") if cfg.long_crop else []
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model = build_fold_model(cfg).to(cfg.device)
    model.requires_grad_(False)
    sm, head = model.trunk.structure_module, model.lddt_head
    sm.requires_grad_(True)
    head.requires_grad_(True)
    record = dict(asdict(cfg), structure_module_only=True, cached_crops=crops, dropout=False)  # always off here
    if cfg.long_crop:
        record.update(long_cached_crops=min(long_crops, len(long_pool)), long_batch_size=long_batch_size(cfg))
    caches = [_load_cache(out / CACHE_NAME, model, train, pool, crops, cfg.crop, cfg, log)]
    if cfg.long_crop:
        caches.append(_load_cache(out / LONG_CACHE_NAME, model, train, long_pool, long_crops, cfg.long_crop, cfg, log))
    # after the kept crops are read: a rerun they refuse leaves the run's record as it was
    atomic_write_text(out / "config.json", json.dumps(record, indent=2))
    # the distogram and the PAE head read the trunk's pair state alone: not trained here
    weights = cfg.loss_weights(distogram=0.0, pae=0.0)
    trainable = [*sm.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.0)
    modules = {"structure_module": sm, "lddt_head": head}
    step = load_training_state(out / "state", modules, opt) if has_training_state(out / "state") else 0
    if step:
        log(f"resumed at step {step}")
    log(f"{' and '.join(str(len(c['aatype'])) for c in caches)} cached crops; {sum(p.numel() for p in trainable):,} "
        "trainable parameters (structure module, pLDDT head)")
    stop = min(cfg.steps, until) if until else cfg.steps
    started, first = time.time(), step
    _clear_openfold_caches()
    model.train()
    without_dropout(model)
    with open(out / "log.jsonl", "a") as logf:
        write = _log_writer(logf, log)
        if step == 0:
            write({"step": 0, **_validate(model, valid, cfg)})
        while step < stop:
            rng = np.random.default_rng((cfg.seed, step))
            torch.manual_seed(cfg.seed * 1_000_003 + step)
            cache, size = (caches[1], long_batch_size(cfg)) if is_long_step(step, cfg) else (caches[0], cfg.batch_size)
            n = len(cache["aatype"])
            idx = np.sort(rng.choice(n, size=min(size, n), replace=False))
            single, pair = (torch.from_numpy(cache[k][idx]).to(cfg.device).float() for k in ("single", "pair"))
            aatype, mask = (torch.from_numpy(cache[k][idx]).to(cfg.device).long() for k in ("aatype", "mask"))
            coords = torch.from_numpy(cache["coords"][idx]).to(cfg.device)
            for g in opt.param_groups:
                g["lr"] = warmup_cosine_lr(step, cfg)
            outputs = structure_module_outputs(model, single, pair, aatype, mask)
            losses = folding_losses(outputs, coords, aatype, mask, weights)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            step += 1
            if after_step(step, stop, losses, cfg, started, first, write, lambda: _validate(model, valid, cfg),
                          lambda: save_training_state(out / "state", modules, opt, step, record)):
                log(f"time limit reached at step {step}")
                break
    return save_model_folder(model, out) if step >= cfg.steps else None
