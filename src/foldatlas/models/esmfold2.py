"""ESMFold2 checkpoints through ``transformers.EsmFold2Model``, behind foldatlas' folding-model interface.

``biohub/ESMFold2``, ``biohub/ESMFold2-Fast``, a local folder, and the tests' random checkpoints
load through :func:`load_esmfold2`. What differs from transformers' own path:

* **No float32 copy at load.** The weights are loaded in the dtype they are stored in (read from the
  safetensors headers), not the dtype ``config.json`` names, so a 16-bit checkpoint never passes
  through a float32 copy of its 6 B-parameter language model. The trunk and heads (a few hundred
  million parameters) are then cast to the requested precision.
* **Precision** (:mod:`foldatlas.models.precision`). ``exact``: ESM C's 16-bit layers are computed in
  float32 one layer at a time (:func:`foldatlas.models.loading.stream_lm_layers`): the same values as a
  float32 copy, at half its memory; the trunk and heads in float32. ``fast``: the whole checkpoint in
  bfloat16, as transformers recommends, on GPUs and on CPUs with native bfloat16 (AVX-512 BF16, AMX);
  without it (AVX2-only CPUs) bfloat16 is emulated and slower than float32, so fast runs as exact.
* **ESM C on disk.** When ESM C's stored weights would take more than :data:`LM_IN_MEMORY_FRACTION`
  of the free memory (ESM C 6B: 12.7 GB in bfloat16), its layers are not loaded at all: each is read
  from the safetensors files when it runs (:class:`foldatlas.models.tensorfiles.TensorFiles`), in
  float32, and dropped after. Resident memory is then the trunk and heads (0.76 GB in float32 for
  ESMFold2-Fast), one layer and the activations; the cost is reading the layers once per fold (from
  the page cache after the first). ``FOLDATLAS_LM_OFFLOAD=1`` (or ``0``) forces the choice.
* **Missing language-model weights are an error**, not a silently random language model.
* **Seeds.** Every record is folded alone after ``torch.manual_seed(seed)``, so its samples depend
  only on its sequence, the model, the options and the seed: never on batching, resume or the
  other records. A one-record run equals ``torch.manual_seed(seed); model.infer_protein(seq)``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from foldatlas.errors import InvalidOptionError, WeightsIntegrityError
from foldatlas.models.loading import (
    FoldingModelBase, from_pretrained_quietly, install_layer_weights, stream_lm_layers)
from foldatlas.models.precision import NO_NATIVE_BF16, Precision, cpu_has_native_bf16, matmul_precision
from foldatlas.models.registry import ResolvedModel
from foldatlas.models.tensorfiles import TensorFiles

__all__ = ["Esmfold2FoldingModel", "load_esmfold2", "esmfold2_precision", "MAX_SAMPLES", "MAX_STEPS", "MAX_LOOPS"]

MAX_SAMPLES = 64  # --num-samples ceiling (the confidence head holds one pair representation per sample)
MAX_STEPS = 1000  # --num-steps ceiling (length of the noise schedule before its cap)
MAX_LOOPS = 48  # --num-loops ceiling (the released checkpoints run 10)
LM_IN_MEMORY_FRACTION = 0.4  # on a CPU, ESM C stays on disk when its stored weights exceed this share of free memory
# The memory check's model of a fold's activation peak (weights excluded), fitted to peaks measured on the CPU
# with the full ESMFold2-Fast widths (pair 256) at 128 and 256 residues and 1 or 8 samples (within 10%):
# a fixed part, 2 + 14 per sample float32 pair-sized tensors ([L, L, 256]: the trunk's pair state and, per
# sample, the confidence head's pair copy, its pair update and its logits), and ESM C's hidden states of every
# layer (held about three times over while they are stacked and gathered).
_FIXED_BYTES = 0.75 * 2**30
_PAIR_TENSORS_FIXED = 2
_PAIR_TENSORS_PER_SAMPLE = 14
_LM_STATE_COPIES = 3


@dataclass
class Esmfold2FoldingModel(FoldingModelBase):
    """A loaded ``EsmFold2Model`` (see :class:`foldatlas.models.loading.FoldingModelBase`)."""

    precision_note: str = ""
    # torch's global generator seeds each fold: folds of one model run one at a time, so that threads
    # (the service's fold workers) cannot interleave their draws
    _fold_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    # -- the folding-model interface -------------------------------------------------------------
    @property
    def default_num_recycles(self) -> None:
        """ESMFold2 does not recycle: its trunk runs ``num_loops`` loops (see :meth:`run_settings`)."""
        return None

    @property
    def default_num_samples(self) -> int:
        """The checkpoint's own number of diffusion samples."""
        return int(self.model.config.structure_head.num_diffusion_samples)

    def check_options(self, options) -> None:
        """Refuse options ESMFold2 does not have (InvalidOptionError)."""
        self.check_family_options(options, self.name)

    @staticmethod
    def check_family_options(options, name: str) -> None:
        """:meth:`check_options` before a model is loaded (``name`` for messages)."""
        if options.num_recycles is not None:
            raise InvalidOptionError("num_recycles applies to ESMFold v1; ESMFold2 runs trunk loops: use "
                                     "--num-loops (num_loops in the API)")
        if options.chunk_size is not None:
            raise InvalidOptionError("chunk_size applies to ESMFold v1's triangle attention; ESMFold2 chunks its "
                                     "pair updates itself")
        for option, value, top in (("num_samples", options.num_samples, MAX_SAMPLES),
                                   ("num_steps", options.num_steps, MAX_STEPS),
                                   ("num_loops", options.num_loops, MAX_LOOPS)):
            low = 0 if option == "num_loops" else 1
            if value is not None and not low <= value <= top:
                raise InvalidOptionError(f"{option} must be between {low} and {top}")

    def run_settings(self, options) -> dict:
        """What a fold with ``options`` runs, every default resolved to a number (recorded in every output)."""
        self.check_options(options)
        config = self.model.config
        return {"seed": int(options.seed or 0),
                "num_samples": int(options.num_samples or self.default_num_samples),
                "num_steps": int(options.num_steps if options.num_steps is not None
                                 else config.structure_head.inference_num_steps),
                "num_loops": int(options.num_loops if options.num_loops is not None else config.num_loops)}

    def batch_tokens(self, max_tokens_per_batch: int) -> int:
        """0: one record per forward pass (the seed is set per record; samples are the batch)."""
        return 0

    def model_length(self, record) -> int:
        """Tokens the model folds: one per residue, no linker."""
        return record.length

    def estimate_peak_bytes(self, length: int, options=None, available: int | None = None) -> int:
        """Activation memory of one fold (weights excluded): pair-sized float32 tensors, more with every sample,
        and ESM C's hidden states (see ``_PAIR_TENSORS_PER_SAMPLE``)."""
        samples = self.run_settings(options)["num_samples"] if options is not None else self.default_num_samples
        config = self.model.config
        pair = length * length * int(config.pairwise_hidden_size) * 4
        lm = config.esmc_config
        lm_states = _LM_STATE_COPIES * (int(lm.num_hidden_layers) + 1) * int(lm.hidden_size) * (length + 2) * 4
        return int(_FIXED_BYTES + (_PAIR_TENSORS_FIXED + _PAIR_TENSORS_PER_SAMPLE * samples) * pair + lm_states)

    def fold_batch(self, records: list, options) -> list:
        """Fold each record alone, seeded; the best sample first-class, every sample in ``samples``."""
        import torch

        from foldatlas.predict.esmfold2 import best_sample, predictions_from_output, protein_features

        settings = self.run_settings(options)
        out = []
        for record in records:
            features = protein_features(record, device=self.device)
            with self._fold_lock, torch.inference_mode(), matmul_precision(self.precision):
                torch.manual_seed(settings["seed"])
                output = self.model.fold(**features, num_diffusion_samples=settings["num_samples"],
                                         num_sampling_steps=settings["num_steps"], num_loops=settings["num_loops"])
            samples = predictions_from_output(record, output, self.name, settings)
            for sample in samples:
                if self.precision is not None:
                    sample.extra["precision"] = self.precision.as_dict()
                sample.check_finite(f"{self.name} on {self.device}, "
                                    f"{self.precision.describe() if self.precision else self.dtype}")
            best = best_sample(samples)
            summary = [{"sample": p.extra["sample"], "ranking_score": p.extra["ranking_score"],
                        "ptm": round(p.ptm, 5), "iptm": None if p.iptm is None else round(p.iptm, 5),
                        "mean_plddt": round(p.mean_plddt, 3)} for p in samples]
            for p in samples:
                p.extra["best_sample"] = best
            chosen = samples[best]
            chosen.extra["samples"] = summary
            chosen.samples = samples
            out.append(chosen)
        return out


def _load_dtype(files: TensorFiles, folder: Path, name: str):
    import torch

    lm = {files.dtype(k) for k in files.keys() if k.startswith("esmc.")}
    if not lm:
        raise WeightsIntegrityError(
            f"model '{name}': {folder} has no language-model weights (esmc.*): ESMFold2 folds from ESM C's "
            f"representations, and without them transformers would fill the language model with random values "
            f"and predict wrong structures; use a checkpoint that bundles ESM C")
    stored = next((d for d in ("bfloat16", "float16") if d in lm), "float32")
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[stored]


def _precision_why(stored) -> str:
    """What precision a CPU fold computes in, and why."""
    name = str(stored).removeprefix("torch.")
    why = ("this CPU has native bfloat16: --precision fast computes in bfloat16, faster, as transformers recommends"
           if cpu_has_native_bf16() else NO_NATIVE_BF16)
    copy = "" if name == "float32" else f", the same values as a float32 copy of its {name} weights"
    return f"precision: float32, each ESM C layer converted as it runs{copy}; {why}"


def esmfold2_precision(precision: Precision) -> Precision:
    """ESMFold2's reading of a resolved precision (the table in :mod:`foldatlas.models.precision`).

    ``fast`` loads the whole checkpoint in bfloat16, as transformers recommends for ESMFold2 (its float32-only
    modules stay in float32), with TF32 on GPUs; ``exact`` computes in float32 everywhere; ``custom`` loads
    in the ``--dtype`` given.
    """
    import dataclasses

    if precision.mode == "fast":
        return dataclasses.replace(precision, language_model="bfloat16", trunk="bfloat16", autocast=None,
                                   kernels=False)
    if precision.mode == "custom":
        return dataclasses.replace(precision, language_model=precision.trunk)
    return precision


def _lm_on_disk(files: TensorFiles, dev, torch_dtype, forced: bool | None) -> bool:
    """Whether ESM C's layers stay on disk: forced, ``FOLDATLAS_LM_OFFLOAD``, else by their size on a CPU."""
    import torch

    if dev.type != "cpu" or torch_dtype != torch.float32:
        return False
    if forced is None and os.environ.get("FOLDATLAS_LM_OFFLOAD", "") in ("0", "1"):
        forced = os.environ["FOLDATLAS_LM_OFFLOAD"] == "1"
    if forced is not None:
        return forced
    from foldatlas.predict.memory import available_memory_bytes

    return files.nbytes("esmc.layers.") > LM_IN_MEMORY_FRACTION * available_memory_bytes()


def _load_lm_on_disk(files: TensorFiles, config, name: str, folder: Path):
    """Build the model with everything but ESM C's layers read into float32, those layers read when they run."""
    import torch
    from transformers import EsmFold2Model

    with torch.device("meta"):
        model = EsmFold2Model(config)
    layers = list(model.esmc.layers)
    layer_ids = {id(m) for layer in layers for m in layer.modules()}
    missing = []
    for module_name, module in model.named_modules():
        if id(module) in layer_ids:
            continue
        prefix = f"{module_name}." if module_name else ""
        for pname, param in list(module.named_parameters(recurse=False)):
            if prefix + pname not in files:
                missing.append(prefix + pname)
                continue
            module._parameters[pname] = torch.nn.Parameter(
                files.read(prefix + pname, torch.float32 if param.is_floating_point() else None), requires_grad=False)
        for bname, buf in list(module.named_buffers(recurse=False)):
            if bname in module._non_persistent_buffers_set:
                continue  # computed by the module's constructor, rebuilt below
            if prefix + bname not in files:
                missing.append(prefix + bname)
                continue
            module._buffers[bname] = files.read(prefix + bname, torch.float32 if buf.is_floating_point() else None)
    model.esmc.rotary_emb = type(model.esmc.rotary_emb)(model.esmc.config)  # its tables are not stored
    leftover = [f"{n}.{b}" for n, m in model.named_modules() for b, t in m.named_buffers(recurse=False)
                if t.is_meta and id(m) not in layer_ids]
    per_layer = []
    for index, layer in enumerate(layers):
        entries = []
        for sub_name, sub in layer.named_modules():
            for pname, param in sub.named_parameters(recurse=False):
                key = f"esmc.layers.{index}.{sub_name + '.' if sub_name else ''}{pname}"
                if key not in files:
                    missing.append(key)
                entries.append((sub, pname, key))
        per_layer.append(entries)
    if missing or leftover:
        first = (missing or leftover)[0]
        raise WeightsIntegrityError(f"model '{name}': {len(missing) + len(leftover)} weights missing from {folder} "
                                    f"(first: {first}); transformers would fill them with random values")

    def weights(index: int):
        return [(sub, pname, files.read(key, torch.float32)) for sub, pname, key in per_layer[index]]

    install_layer_weights(layers, weights, torch.float32)  # everything else was read in float32 above
    return model


def load_esmfold2(resolved: ResolvedModel, name: str, dev, precision: Precision,
                  lm_offload: bool | None = None) -> Esmfold2FoldingModel:
    """Load an ``EsmFold2Model`` checkpoint (see the module docstring).

    Parameters
    ----------
    resolved : ResolvedModel
    name : str
        What the user named it, for messages.
    dev : torch.device
    precision : Precision
        Resolved for the device (:func:`foldatlas.models.precision.resolve_precision`); read for ESMFold2 by
        :func:`esmfold2_precision`: float32 casts the trunk and heads up and computes ESM C's 16-bit layers in
        float32, a 16-bit dtype loads the whole checkpoint in it.
    lm_offload : bool, optional
        Keep ESM C's layers on disk (CPU, float32 only); None decides by their size (module docstring).

    Raises
    ------
    WeightsIntegrityError
        Unreadable config or weights, missing language-model weights, or any weight missing.
    """
    import torch
    from transformers import EsmFold2Config, EsmFold2Model

    precision = esmfold2_precision(precision)
    torch_dtype = getattr(torch, precision.trunk)
    try:
        config = EsmFold2Config.from_pretrained(resolved.path)
    except (OSError, ValueError, TypeError) as e:
        raise WeightsIntegrityError(f"model '{name}': unreadable ESMFold2 config.json in {resolved.path} "
                                    f"({str(e).splitlines()[0] if str(e) else e.__class__.__name__})") from e
    files = TensorFiles(resolved.path)
    stored = _load_dtype(files, resolved.path, name)
    loaded = dict(name=resolved.name, path=resolved.path, source=resolved.source, revision=resolved.revision,
                  device=dev, dtype=torch_dtype, precision=precision)
    if _lm_on_disk(files, dev, torch_dtype, lm_offload):
        model = _load_lm_on_disk(files, config, name, resolved.path)
        model.eval()
        size = files.nbytes("esmc.layers.") / 2**30
        note = (f"ESM C stays on disk: each of its {len(model.esmc.layers)} layers ({size:.1f} GiB in all) is read "
                f"when it runs, more than {LM_IN_MEMORY_FRACTION:.0%} of the free memory otherwise; "
                f"{_precision_why(stored)}")
        return Esmfold2FoldingModel(model=model, precision_note=note, **loaded)
    load_dtype = stored if torch_dtype == torch.float32 else torch_dtype  # never a float32 copy of 16-bit weights
    model, info = from_pretrained_quietly(EsmFold2Model, resolved.path, name, config=config, dtype=load_dtype,
                                          output_loading_info=True)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise WeightsIntegrityError(f"model '{name}': {len(missing)} weights missing from {resolved.path} "
                                    f"(first: {missing[0]}); transformers would fill them with random values")
    model.eval()
    model.requires_grad_(False)
    model.to(dev)
    if torch_dtype == torch.float32:
        for child_name, child in model.named_children():
            if child_name != "esmc":
                child.to(torch.float32)
    lm_dtype = next(model.esmc.parameters()).dtype
    note = ""
    if lm_dtype != torch.float32 and torch_dtype == torch.float32:  # exact: ESM C's layers computed in float32
        stream_lm_layers(model.esmc, torch.float32, layers=model.esmc.layers)
        if dev.type == "cpu":
            note = f"ESM C stays {str(lm_dtype).removeprefix('torch.')} in memory; {_precision_why(lm_dtype)}"
    return Esmfold2FoldingModel(model=model, precision_note=note, **loaded)
