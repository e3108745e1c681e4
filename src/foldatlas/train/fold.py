"""Training of an ESMFold-architecture folding model on experimental structures.

The model is ``transformers.EsmForProteinFolding`` with a small trunk and
structure module on top of a language model in the ESM-2 format (by default
the embedded ``foldatlas-lm-small``), which is frozen, as in ESMFold. Chains
come from ``structures_train.npz`` of ``foldatlas train data``; each step takes
contiguous random crops, a random number of recycles (gradients through the
last pass only, as transformers' trunk does), and the losses of
:mod:`foldatlas.train.fold_losses`. Seeded per step and resumable like the
language-model training (:mod:`foldatlas.train.checkpoints`).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from foldatlas.files import atomic_write_text
from foldatlas.seq.alphabet import RESTYPE_INDEX
from foldatlas.train.checkpoints import has_training_state, load_training_state, save_training_state
from foldatlas.train.schedule import warmup_cosine_lr

__all__ = ["FoldTrainConfig", "fold_config_dict", "build_fold_model", "init_folding_weights", "train_fold",
           "chain_batch", "chains_at_least", "after_step", "without_dropout", "eval_mode"]


@dataclass
class FoldTrainConfig:
    """Model size and training schedule (recorded in the run folder and the model card).

    ``violation`` weighs AlphaFold's between-residue violation losses
    (:func:`foldatlas.train.fold_losses.structural_violations`; AlphaFold
    fine-tunes with 1.0), ``violation_clash`` their all-atom clash part,
    ``violation_bond`` their peptide C-N length part (AlphaFold: 1 for both),
    ``violation_bond_tolerance`` and ``violation_angle_tolerance`` the flat
    bottoms of their C-N length and angle terms in standard deviations
    (AlphaFold: 12), ``violation_clash_overlap`` the clash part's allowed van der
    Waals overlap in A (AlphaFold: 1.5) and ``unclamped_fape`` the share of unclamped FAPE
    (AlphaFold: 0.1); :meth:`loss_weights` turns them into the loss's weights. ``init``
    starts from a trained folding model (name or folder) of this architecture
    instead of a new one: fine-tuning. ``device``
    is a torch device (``"cuda"`` trains on a GPU). ``time_limit`` stops the run
    (with a checkpoint) after that many seconds of this call; a later call resumes.
    ``dropout`` False trains with the dropout layers off, as inference runs the
    model (for fine-tuning geometry: :func:`without_dropout`). ``long_crop``
    (structure module alone, :func:`foldatlas.train.fold_sm.train_structure_module`;
    0: none) adds kept crops of that many residues from chains at least that long,
    and every ``long_every``-th step trains on them.
    """

    lm: str = "foldatlas-lm-small"
    blocks: int = 4
    sequence_dim: int = 256
    pairwise_dim: int = 64
    head_width: int = 32
    sm_dim: int = 128
    sm_blocks: int = 8
    ipa_heads: int = 8
    crop: int = 128
    batch_size: int = 2
    steps: int = 4000
    lr: float = 1e-3
    warmup: int = 100
    min_lr_ratio: float = 0.1
    max_recycles: int = 3
    min_length: int = 40
    seed: int = 0
    threads: int | None = None
    checkpoint_every: int = 25
    eval_every: int = 250
    eval_chains: int = 40
    log_every: int = 5
    violation: float = 0.0
    violation_clash: float = 1.0
    violation_bond: float = 1.0
    violation_bond_tolerance: float = 12.0
    violation_angle_tolerance: float = 12.0
    violation_clash_overlap: float = 1.5
    unclamped_fape: float = 0.1
    init: str | None = None
    device: str = "cpu"
    time_limit: float | None = None
    dropout: bool = True
    long_crop: int = 0
    long_every: int = 2

    def loss_weights(self, **heads: float):
        """The :class:`~foldatlas.train.fold_losses.LossWeights` this run trains with (``heads``: other weights)."""
        from foldatlas.train.fold_losses import LossWeights

        return LossWeights(violation=self.violation, violation_clash=self.violation_clash,
                           violation_bond=self.violation_bond,
                           violation_bond_tolerance=self.violation_bond_tolerance,
                           violation_angle_tolerance=self.violation_angle_tolerance,
                           violation_clash_overlap=self.violation_clash_overlap,
                           unclamped_fape=self.unclamped_fape, **heads)


def fold_config_dict(lm_config: dict, cfg: FoldTrainConfig) -> dict:
    """``config.json`` of the folding model: the language model's config plus an ``esmfold_config``."""
    keep = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "max_position_embeddings", "position_embedding_type", "layer_norm_eps",
            "emb_layer_norm_before", "token_dropout", "pad_token_id", "mask_token_id")
    from foldatlas.models.random_checkpoint import ESM2_VOCAB

    base = {k: lm_config[k] for k in keep if k in lm_config}
    trunk = dict(num_blocks=cfg.blocks, sequence_state_dim=cfg.sequence_dim, pairwise_state_dim=cfg.pairwise_dim,
                 sequence_head_width=cfg.head_width, pairwise_head_width=cfg.head_width, chunk_size=None,
                 # transformers runs max_recycles passes in all when no count is given (ESMFold v1: 4 = the
                 # first pass and 3 recycles), but num_recycles + 1 passes when one is: +1 here.
                 max_recycles=cfg.max_recycles + 1, dropout=0.0,
                 structure_module=dict(sequence_dim=cfg.sm_dim, pairwise_dim=cfg.pairwise_dim, ipa_dim=16,
                                       resnet_dim=cfg.sm_dim, num_heads_ipa=cfg.ipa_heads,
                                       num_blocks=cfg.sm_blocks))
    return dict(base, architectures=["EsmForProteinFolding"], model_type="esm", vocab_list=list(ESM2_VOCAB),
                is_folding_model=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                esmfold_config=dict(fp16_esm=False, lddt_head_hid_dim=128, embed_aa=True, trunk=trunk))


def _init_openfold_linear(mod) -> None:
    """OpenFold's ``Linear`` initialisations (AlphaFold 2 supplement 1.11.4), by the layer's ``init`` tag."""
    import math

    from torch.nn import init

    fan_in = max(1, mod.weight.shape[1])
    if mod.bias is not None:
        init.zeros_(mod.bias)
    if mod.init_fn is not None:
        mod.init_fn(mod.weight, mod.bias)
    elif mod.init == "default":
        init.trunc_normal_(mod.weight, std=math.sqrt(1.0 / fan_in))
    elif mod.init == "relu":
        init.trunc_normal_(mod.weight, std=math.sqrt(2.0 / fan_in))
    elif mod.init == "glorot":
        init.xavier_uniform_(mod.weight, gain=1)
    elif mod.init == "gating":
        init.zeros_(mod.weight)
        if mod.bias is not None:
            init.ones_(mod.bias)
    elif mod.init == "normal":
        init.kaiming_normal_(mod.weight, nonlinearity="linear")
    elif mod.init == "final":
        init.zeros_(mod.weight)


def init_folding_weights(model) -> None:
    """Give a new ``EsmForProteinFolding`` ESMFold's own initialisation (everything but the language model).

    transformers initialises every linear layer of a new ``EsmForProteinFolding``
    with N(0, 0.02): its ``_init_weights`` calls ``EsmPreTrainedModel``'s, not the
    ESMFold one, so the zero-initialised residual outputs, the gates open at 1,
    the IPA head weights and the fan-in scaled layers of ESMFold and OpenFold are
    lost (harmless when real weights are loaded over them, fatal for training:
    the folding trunk then barely learns). This restores them: OpenFold's
    ``Linear`` inits by tag, PyTorch's defaults for plain layers (as in fair-esm),
    and the explicit zero / gate inits of the trunk blocks.
    """
    import torch
    from torch.nn import init
    from transformers.models.esm import modeling_esmfold as mf

    parts = [m for name, m in model.named_children() if name != "esm"]
    with torch.no_grad():
        for part in parts:
            for mod in part.modules():
                if isinstance(mod, mf.EsmFoldLinear):
                    _init_openfold_linear(mod)
                elif type(mod) in (torch.nn.Linear, torch.nn.LayerNorm, torch.nn.Embedding):
                    mod.reset_parameters()
                elif isinstance(mod, mf.EsmFoldInvariantPointAttention):
                    init.constant_(mod.head_weights, 0.541324854612918)  # softplus(w) = 1
        for part in parts:
            for mod in part.modules():
                if isinstance(mod, mf.EsmFoldSelfAttention):
                    init.zeros_(mod.o_proj.bias)
                    if mod.gated:
                        init.zeros_(mod.g_proj.weight)
                        init.ones_(mod.g_proj.bias)
                elif isinstance(mod, mf.EsmFoldSequenceToPair):
                    init.zeros_(mod.proj.bias)
                    init.zeros_(mod.o_proj.bias)
                elif isinstance(mod, mf.EsmFoldTriangularSelfAttentionBlock):
                    for layer in (mod.tri_mul_in.linear_z, mod.tri_mul_out.linear_z, mod.tri_att_start.mha.linear_o,
                                  mod.tri_att_end.mha.linear_o, mod.sequence_to_pair.o_proj,
                                  mod.pair_to_sequence.linear, mod.seq_attention.o_proj, mod.mlp_seq.mlp[-2],
                                  mod.mlp_pair.mlp[-2]):
                        init.zeros_(layer.weight)
                        if layer.bias is not None:
                            init.zeros_(layer.bias)


def build_fold_model(cfg: FoldTrainConfig):
    """A new folding model with the language model's trained weights loaded and frozen.

    With ``cfg.init`` the trunk and heads start from that trained folding model
    (its ``config.json`` must describe the same sizes).
    """
    import torch
    from transformers import EsmConfig, EsmForProteinFolding

    from foldatlas.models.language import load_language_model

    if cfg.init:
        return _load_initial_model(cfg)

    lm, resolved = load_language_model(cfg.lm, attn_implementation="sdpa")
    lm_config = json.loads((resolved.path / "config.json").read_text())
    torch.manual_seed(cfg.seed)
    model = EsmForProteinFolding(EsmConfig(**fold_config_dict(lm_config, cfg)))
    init_folding_weights(model)
    missing, unexpected = model.esm.load_state_dict(lm.esm.state_dict(), strict=False)
    if unexpected or [k for k in missing if not k.startswith("contact_head")]:
        raise RuntimeError(f"language model '{cfg.lm}' does not fit: missing {missing}, unexpected {unexpected}")
    model.esm.requires_grad_(False)
    return model


def _load_initial_model(cfg: FoldTrainConfig):
    """A trained folding model in float32 for fine-tuning, its language model frozen."""
    import torch
    from transformers import EsmForProteinFolding

    from foldatlas.models.loading import from_pretrained_quietly
    from foldatlas.models.registry import resolve_model

    folder = resolve_model(cfg.init).path
    trunk = json.loads((folder / "config.json").read_text()).get("esmfold_config", {}).get("trunk", {})
    want = dict(num_blocks=cfg.blocks, sequence_state_dim=cfg.sequence_dim, pairwise_state_dim=cfg.pairwise_dim)
    have = {k: trunk.get(k) for k in want}
    if have != want:
        raise ValueError(f"'{cfg.init}' has trunk {have}, the run asks for {want}")
    torch.manual_seed(cfg.seed)
    model = from_pretrained_quietly(EsmForProteinFolding, folder, cfg.init, dtype=torch.float32)
    model.esm.requires_grad_(False)
    return model


def chain_batch(chains: list[dict], crop: int, rng: np.random.Generator, pad_to: int | None = None):
    """Crop and pad chains into tensors: aatype, attention mask, coords ``[B, L, 5, 3]``, residue index.

    ``L`` is the longest crop, or ``pad_to`` when given (at least that).
    """
    import torch

    cut = []
    for ch in chains:
        n = len(ch["sequence"])
        start = int(rng.integers(0, n - crop + 1)) if n > crop else 0
        cut.append((ch["sequence"][start:start + crop], ch["coords"][start:start + crop]))
    width = max(pad_to or 0, *(len(s) for s, _ in cut))
    aatype = torch.zeros(len(cut), width, dtype=torch.long)
    mask = torch.zeros(len(cut), width, dtype=torch.long)
    coords = torch.zeros(len(cut), width, 5, 3)
    for b, (seq, xyz) in enumerate(cut):
        aatype[b, :len(seq)] = torch.tensor([RESTYPE_INDEX.get(c, 20) for c in seq])
        mask[b, :len(seq)] = 1
        coords[b, :len(seq)] = torch.from_numpy(np.asarray(xyz, dtype=np.float32))
    residx = torch.arange(width).expand(len(cut), width)
    return aatype, mask, coords, residx


def _clear_openfold_caches() -> None:
    """Drop transformers' cached identity rotations and quaternion tables.

    They are memoized tensors; made under ``torch.inference_mode`` (any fold
    earlier in the process), they cannot take part in a training step.
    """
    from transformers.models.esm.openfold_utils import rigid_utils

    for name in ("identity_rot_mats", "identity_trans", "identity_quats", "_get_quat"):
        fn = getattr(rigid_utils, name, None)
        if hasattr(fn, "cache_clear"):
            fn.cache_clear()


@contextmanager
def eval_mode(model):
    """Run ``model`` in evaluation mode inside the block, then give every module back its own mode.

    Not ``model.train()`` afterwards: that would switch back on dropout layers a fine-tuning run keeps off
    (:func:`without_dropout`).
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.train(training)


def _validate(model, chains: list[dict], cfg: FoldTrainConfig) -> dict:
    import torch

    from foldatlas.train.fold_losses import LossWeights, folding_losses

    rng = np.random.default_rng(0)
    totals: dict[str, float] = {}
    weights = LossWeights(violation=1.0)  # reported whatever the training weight
    with eval_mode(model), torch.no_grad():
        for ch in chains:
            aatype, mask, coords, residx = (t.to(cfg.device) for t in chain_batch([ch], 256, rng))
            out = model(input_ids=aatype, attention_mask=mask, position_ids=residx, num_recycles=cfg.max_recycles)
            for k, v in folding_losses(out, coords, aatype, mask, weights).items():
                totals[k] = totals.get(k, 0.0) + float(v) / len(chains)
    return {f"valid_{k}": round(v, 4) for k, v in totals.items()}


def without_dropout(model) -> None:
    """Switch off every dropout layer of ``model`` (which stays in training mode otherwise), as inference runs it.

    The structure module's dropout (0.1 after each IPA and transition) changes its geometry, not only its noise:
    on the same 16 kept crops the shipped model's peptide C-N excess was 0.063 A with dropout on and 0.091 A
    without, atom clashes 0.28 and 0.09. A first structure-module run trained with it on lowered its training-mode
    violations while those of the dropout-free fold rose (validation C-N excess 0.146 -> 0.15-0.23 A).
    """
    import torch

    for mod in model.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.eval()


def chains_at_least(train, length: int, option: str) -> list[int]:
    """Indices of the training chains with at least ``length`` residues (``option`` names the setting in the error)."""
    pool = [k for k in range(len(train)) if train.offsets[k + 1] - train.offsets[k] >= length]
    if not pool:
        raise ValueError(f"no training chain has {length} residues or more ({option})")
    return pool


def _training_sets(data: Path, cfg: FoldTrainConfig):
    """The training chains, the indices of those long enough to train on, and the validation chains scored."""
    from foldatlas.train.data import load_structures

    train = load_structures(data / "structures_train.npz")
    pool = chains_at_least(train, cfg.min_length, "min_length")
    valid_set = load_structures(data / "structures_valid.npz")
    return train, pool, [valid_set.chain(k) for k in range(min(cfg.eval_chains, len(valid_set)))]


def _log_writer(logf, log):
    """``write(record)``: one JSON line into the run's log file (flushed) and to ``log``."""
    def write(rec: dict) -> None:
        logf.write(json.dumps(rec) + "\n")
        logf.flush()
        log(json.dumps(rec))

    return write


def after_step(step: int, stop: int, losses: dict, cfg: FoldTrainConfig, started: float, first: int, write,
               validate, checkpoint, extra: dict | None = None) -> bool:
    """Log, validate and checkpoint after a training step, as ``cfg`` asks; True when the run is out of time.

    Parameters
    ----------
    step, stop : int
        The step just done and the last step of this call.
    losses : dict
        The step's loss tensors (logged every ``cfg.log_every`` steps).
    cfg : FoldTrainConfig
    started, first : float, int
        When and at which step this call began (seconds per step, the time limit).
    write, validate, checkpoint : callable
        ``write(record)`` logs a record, ``validate()`` returns validation metrics, ``checkpoint()`` saves.
    extra : dict, optional
        More values for the step's log record.
    """
    if step % cfg.log_every == 0 or step == stop:
        write({"step": step, **{k: round(v.item(), 4) for k, v in losses.items()}, **(extra or {}),
               "lr": round(warmup_cosine_lr(step - 1, cfg), 6), "time": round(time.time(), 1),
               "s_per_step": round((time.time() - started) / max(1, step - first), 2)})
    if step % cfg.eval_every == 0 or step == cfg.steps:
        write({"step": step, **validate()})
    out_of_time = cfg.time_limit is not None and time.time() - started > cfg.time_limit
    if step % cfg.checkpoint_every == 0 or step == stop or out_of_time:
        checkpoint()
    return out_of_time


def train_fold(data_dir: str | Path, out_dir: str | Path, cfg: FoldTrainConfig, log=print,
               until: int | None = None) -> Path | None:
    """Train (or resume) the folding model; return the model folder when ``cfg.steps`` are done.

    Parameters
    ----------
    data_dir : path
        Folder written by ``foldatlas train data``.
    out_dir : path
        Run folder: ``state/``, ``log.jsonl``, and at the end ``model/``.
    cfg : FoldTrainConfig
    log : callable
    until : int, optional
        Stop (with a checkpoint) at this step; a later call resumes.

    Returns
    -------
    Path or None
    """
    import torch

    from foldatlas.train.fold_losses import folding_losses
    from foldatlas.train.lm import save_model_folder

    data, out = Path(data_dir), Path(out_dir)
    train, pool, valid = _training_sets(data, cfg)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model = build_fold_model(cfg).to(cfg.device)
    weights = cfg.loss_weights()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.0)
    modules = {"model": model}
    step = load_training_state(out / "state", modules, opt) if has_training_state(out / "state") else 0
    if step:
        log(f"resumed at step {step}")
    log(f"{len(pool)} training chains; {sum(p.numel() for p in trainable):,} trainable parameters")
    atomic_write_text(out / "config.json", json.dumps(asdict(cfg), indent=2))
    stop = min(cfg.steps, until) if until else cfg.steps
    started, first = time.time(), step
    _clear_openfold_caches()
    model.train()
    if not cfg.dropout:
        without_dropout(model)
    with open(out / "log.jsonl", "a") as logf:
        write = _log_writer(logf, log)
        while step < stop:
            rng = np.random.default_rng((cfg.seed, step))
            torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout: the same on a resumed run
            chains = [train.chain(int(pool[i])) for i in rng.integers(0, len(pool), cfg.batch_size)]
            aatype, mask, coords, residx = (t.to(cfg.device) for t in chain_batch(chains, cfg.crop, rng))
            recycles = int(rng.integers(0, cfg.max_recycles + 1))
            for g in opt.param_groups:
                g["lr"] = warmup_cosine_lr(step, cfg)
            out_ = model(input_ids=aatype, attention_mask=mask, position_ids=residx, num_recycles=recycles)
            losses = folding_losses(out_, coords, aatype, mask, weights)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            step += 1
            if after_step(step, stop, losses, cfg, started, first, write, lambda: _validate(model, valid, cfg),
                          lambda: save_training_state(out / "state", modules, opt, step, asdict(cfg)),
                          extra={"recycles": recycles}):
                log(f"time limit reached at step {step}")
                break
    return save_model_folder(model, out) if step >= cfg.steps else None
