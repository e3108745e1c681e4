"""Masked-language-model training of an ESM-2-architecture model.

The model is ``transformers.EsmForMaskedLM`` with the ESM-2 vocabulary,
tokenizer and rotary positions, so the result is a folder that loads exactly
like ``facebook/esm2_t6_8M_UR50D``. Training is CPU-sized, seeded and
resumable:

* every step draws its batch from ``numpy.random.default_rng((seed, step))``,
  so a resumed run sees the same batches as an uninterrupted one;
* the model, the auxiliary head and the AdamW state are checkpointed as
  safetensors (never pickles) with a JSON of the step, every
  ``checkpoint_every`` steps, atomically;
* losses go to ``log.jsonl``, validation perplexity every ``eval_every`` steps.

Auxiliary target (``profile_weight > 0``): for the StructureDB training chains
in a batch, a linear head on the last hidden state predicts each residue's
sequence-profile column (cross-entropy to the profile frequencies), to teach a
small model evolutionary statistics that masked-LM training learns slowly.
The head is dropped from the released model.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from foldatlas.files import atomic_write_text
from foldatlas.models.language import MASK, PAD, TOKEN_OF, tokenize
from foldatlas.models.random_checkpoint import ESM2_VOCAB
from foldatlas.train.checkpoints import has_training_state, load_training_state, save_training_state
from foldatlas.train.schedule import warmup_cosine_lr

__all__ = ["LMTrainConfig", "esm2_config_dict", "write_tokenizer", "save_model_folder", "tokenize", "train_lm", "mask_tokens",
           "masked_perplexity"]

_PROFILE_ORDER = "ARNDCQEGHILKMFPSTWYV"
# ESM vocabulary ids of the profile columns (to map profiles to LM logits if needed).
PROFILE_TOKEN_IDS = [TOKEN_OF[a] for a in _PROFILE_ORDER]


@dataclass
class LMTrainConfig:
    """Model size and training schedule (all recorded in the model card)."""

    layers: int = 6
    hidden: int = 256
    heads: int = 16
    ffn: int = 1024
    crop: int = 256
    batch_size: int = 32
    steps: int = 3000
    lr: float = 2e-3
    warmup: int = 150
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    mask_prob: float = 0.15
    profile_weight: float = 0.5
    profile_fraction: float = 0.25
    seed: int = 0
    threads: int | None = None
    checkpoint_every: int = 50
    eval_every: int = 250
    eval_sequences: int = 300
    log_every: int = 10
    extra: dict = field(default_factory=dict)


def esm2_config_dict(layers: int, hidden: int, heads: int, ffn: int, max_positions: int = 1026) -> dict:
    """``config.json`` content of an ESM-2-architecture masked LM (as facebook/esm2_*)."""
    return dict(
        architectures=["EsmForMaskedLM"], model_type="esm", vocab_size=len(ESM2_VOCAB), hidden_size=hidden,
        num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=ffn, hidden_act="gelu",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=max_positions,
        position_embedding_type="rotary", layer_norm_eps=1e-5, emb_layer_norm_before=False, token_dropout=True,
        pad_token_id=PAD, mask_token_id=MASK, initializer_range=0.02, is_folding_model=False, use_cache=True,
    )


def write_tokenizer(folder: Path) -> None:
    """Write the ESM-2 tokenizer files (``vocab.txt`` and configs) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "vocab.txt", "\n".join(ESM2_VOCAB) + "\n")
    atomic_write_text(folder / "tokenizer_config.json", json.dumps(
        {"tokenizer_class": "EsmTokenizer", "model_max_length": 1024, "cls_token": "<cls>", "eos_token": "<eos>",
         "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"}, indent=2))
    atomic_write_text(folder / "special_tokens_map.json", json.dumps(
        {"cls_token": "<cls>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
         "mask_token": "<mask>"}, indent=2))


def save_model_folder(model, out: Path) -> Path:
    """Write a trained model's final folder ``out/model`` (safetensors, config, tokenizer) and return it."""
    model.eval()
    final = out / "model"
    model.save_pretrained(str(final), safe_serialization=True)
    write_tokenizer(final)
    return final


def mask_tokens(ids: np.ndarray, rng: np.random.Generator, prob: float) -> tuple[np.ndarray, np.ndarray]:
    """BERT/ESM masking: of ``prob`` of the residues, 80% ``<mask>``, 10% random, 10% kept.

    Returns
    -------
    inputs : ndarray
        Token ids with the masking applied.
    labels : ndarray
        The original ids at masked positions, -100 elsewhere.
    """
    residue = ids >= 4
    chosen = residue & (rng.random(ids.shape) < prob)
    labels = np.where(chosen, ids, -100)
    roll = rng.random(ids.shape)
    inputs = ids.copy()
    inputs[chosen & (roll < 0.8)] = MASK
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[swap] = rng.integers(4, 24, size=int(swap.sum()))
    return inputs, labels


def _crop(seq: str, crop: int, rng: np.random.Generator) -> tuple[str, int]:
    if len(seq) <= crop:
        return seq, 0
    start = int(rng.integers(0, len(seq) - crop + 1))
    return seq[start:start + crop], start


def masked_perplexity(model, seqs: list[str], crop: int = 1022, prob: float = 0.15, seed: int = 1234,
                      batch_size: int = 8, unigram: np.ndarray | None = None) -> dict:
    """Masked-LM perplexity on fixed masks, and the unigram baseline on the same positions.

    Parameters
    ----------
    model : transformers.EsmForMaskedLM
    seqs : list of str
    crop : int
        Sequences longer than this are cut to their first ``crop`` residues.
    prob : float
        Masked fraction (every masked position is replaced by ``<mask>``).
    seed : int
    batch_size : int
    unigram : ndarray, optional
        Residue frequencies over the 33-token vocabulary (training set).

    Returns
    -------
    dict
        ``perplexity``, ``unigram_perplexity`` (if given), ``masked_tokens``.
    """
    import torch

    rng = np.random.default_rng(seed)
    nll = uni = 0.0
    count = 0
    model.eval()
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    with torch.no_grad():
        for i in range(0, len(order), batch_size):
            batch = [seqs[j][:crop] for j in order[i:i + batch_size]]
            ids, att = tokenize(batch)
            chosen = (ids >= 4) & (rng.random(ids.shape) < prob)
            inputs = np.where(chosen, MASK, ids)
            logits = model(input_ids=torch.from_numpy(inputs), attention_mask=torch.from_numpy(att)).logits
            logp = torch.log_softmax(logits.float(), -1)
            sel = torch.from_numpy(chosen)
            target = torch.from_numpy(ids)[sel]
            nll += float(-logp[sel].gather(-1, target[:, None]).sum())
            if unigram is not None:
                uni += float(-np.log(unigram[target.numpy()]).sum())
            count += int(sel.sum())
    out = {"perplexity": math.exp(nll / max(count, 1)), "masked_tokens": count}
    if unigram is not None:
        out["unigram_perplexity"] = math.exp(uni / max(count, 1))
    return out


def unigram_frequencies(seqs: list[str]) -> np.ndarray:
    """Residue frequencies over the ESM vocabulary (add-one smoothed over residue tokens)."""
    counts = np.zeros(len(ESM2_VOCAB))
    for s in seqs:
        for c, n in zip(*np.unique(np.frombuffer(s.encode(), dtype=np.uint8), return_counts=True)):
            counts[TOKEN_OF.get(chr(c), TOKEN_OF["X"])] += n
    counts[4:29] += 1
    return counts / counts.sum()


def train_lm(data_dir: str | Path, out_dir: str | Path, cfg: LMTrainConfig, log=print,
             until: int | None = None) -> Path | None:
    """Train (or resume training) the masked LM; return the released model folder.

    Parameters
    ----------
    data_dir : path
        A folder written by ``foldatlas train data`` (``lm_train.fasta``,
        ``lm_valid.fasta``, ``structures_train.npz``).
    out_dir : path
        Run folder: ``state/`` (resumable checkpoint), ``log.jsonl``, and at
        the end ``model/`` (safetensors, config, tokenizer).
    cfg : LMTrainConfig
    log : callable
    until : int, optional
        Stop (with a checkpoint) at this step instead of ``cfg.steps``; a later
        call resumes with the same schedule (time-sliced training).

    Returns
    -------
    Path or None
        ``out_dir/model``, or None if stopped before ``cfg.steps``.
    """
    import torch
    from transformers import EsmConfig, EsmForMaskedLM

    from foldatlas.train.data import load_structures, read_fasta_pairs

    data, out = Path(data_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    seqs = [s for _, s in read_fasta_pairs(data / "lm_train.fasta")]
    valid = [s for _, s in read_fasta_pairs(data / "lm_valid.fasta")][: cfg.eval_sequences]
    structs = load_structures(data / "structures_train.npz") if cfg.profile_weight > 0 else None
    unigram = unigram_frequencies(seqs)
    log(f"{len(seqs)} training sequences, {len(valid)} validation sequences")

    config = EsmConfig(**esm2_config_dict(cfg.layers, cfg.hidden, cfg.heads, cfg.ffn))
    model = EsmForMaskedLM(config)
    head = torch.nn.Linear(cfg.hidden, 20) if structs is not None and len(structs) else None
    modules = {"model": model, "head": head}
    params = [p for m in (model, head) if m is not None for p in m.parameters()]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8)
    step = 0
    if has_training_state(out / "state"):
        step = load_training_state(out / "state", modules, opt)
        log(f"resumed at step {step}")
    atomic_write_text(out / "config.json", json.dumps(asdict(cfg), indent=2))
    logf = open(out / "log.jsonl", "a")
    started, tokens = time.time(), 0
    model.train()
    stop = min(cfg.steps, until) if until else cfg.steps
    while step < stop:
        rng = np.random.default_rng((cfg.seed, step))
        n_prof = int(rng.binomial(cfg.batch_size, cfg.profile_fraction)) if head is not None else 0
        picks = [seqs[int(i)] for i in rng.integers(0, len(seqs), cfg.batch_size - n_prof)]
        batch, profiles = [_crop(s, cfg.crop, rng)[0] for s in picks], []
        for k in rng.integers(0, len(structs), n_prof) if n_prof else []:
            ch = structs.chain(int(k))
            cut, start = _crop(ch["sequence"], cfg.crop, rng)
            batch.append(cut)
            profiles.append(ch["profile"][start:start + len(cut)].astype(np.float32))
        ids, att = tokenize(batch)
        inputs, labels = mask_tokens(ids, rng, cfg.mask_prob)
        for g in opt.param_groups:
            g["lr"] = warmup_cosine_lr(step, cfg)
        outputs = model(input_ids=torch.from_numpy(inputs), attention_mask=torch.from_numpy(att),
                        output_hidden_states=head is not None)
        lab = torch.from_numpy(labels)
        mlm = torch.nn.functional.cross_entropy(outputs.logits.reshape(-1, outputs.logits.shape[-1]),
                                                lab.reshape(-1), ignore_index=-100)
        loss, prof_loss = mlm, torch.zeros(())
        if profiles:
            hid = outputs.hidden_states[-1][cfg.batch_size - n_prof:]
            tgt = torch.zeros(hid.shape[0], hid.shape[1], 20)
            for b, p in enumerate(profiles):
                tgt[b, 1:len(p) + 1] = torch.from_numpy(p)
            tot = tgt.sum(-1)
            sel = tot > 0.5
            logq = torch.log_softmax(head(hid), -1)
            prof_loss = -(tgt[sel] / tot[sel][:, None] * logq[sel]).sum(-1).mean()
            loss = mlm + cfg.profile_weight * prof_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        tokens += int(att.sum())
        if step % cfg.log_every == 0 or step == cfg.steps:
            rec = {"step": step, "loss": round(loss.item(), 4), "mlm": round(mlm.item(), 4),
                   "profile": round(prof_loss.item(), 4), "lr": round(warmup_cosine_lr(step - 1, cfg), 6),
                   "tokens_per_s": round(tokens / (time.time() - started), 1), "time": round(time.time(), 1)}
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log(json.dumps(rec))
        if step % cfg.eval_every == 0 or step == cfg.steps:
            res = masked_perplexity(model, valid, crop=cfg.crop * 2, unigram=unigram)
            rec = {"step": step, "valid_perplexity": round(res["perplexity"], 3),
                   "valid_unigram_perplexity": round(res["unigram_perplexity"], 3)}
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log(json.dumps(rec))
            model.train()
        if step % cfg.checkpoint_every == 0 or step == stop:
            save_training_state(out / "state", modules, opt, step, asdict(cfg))
    logf.close()
    if step < cfg.steps:
        return None
    final = save_model_folder(model, out)
    np.save(out / "unigram.npy", unigram)
    return final
