"""Loading ESMFold checkpoints through ``transformers.EsmForProteinFolding``.

Real weights (``facebook/esmfold_v1``) and the tiny random checkpoints of the
tests go through exactly this code.

Memory: the released ESMFold v1 checkpoint stores its 3 B-parameter language
model in float16. Float16 matrix products are unusably slow on most CPUs, so the
reference CPU path (fair-esm's ``--cpu-only``) converts the whole language model
to float32, doubling its 5.6 GB. foldatlas keeps the 16-bit weights and converts
one layer at a time to float32 just before it runs (:func:`stream_lm_layers`).
The converted values are exactly those of the float32 copy, so outputs are
identical, at about half the resident memory.

Precision (:mod:`foldatlas.models.precision`): :func:`prepare_esmfold` puts a loaded model in a resolved
mode: the language model's compute dtype, the trunk blocks' forward (lean or transformers' own, under
bfloat16 autocast in the fast mode) and, on GPUs, the fused triangle kernels where installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from foldatlas.errors import InvalidOptionError, WeightsIntegrityError
from foldatlas.files import atomic_write_text, sha256_file
from foldatlas.models.registry import ResolvedModel, resolve_model

__all__ = ["FoldingModel", "FoldingModelBase", "check_device_options", "load_folding_model", "prepare_esmfold",
           "weights_sha256",
           "stream_lm_layers", "install_layer_weights", "convert_outside_layers", "from_pretrained_quietly",
           "check_fold_options"]


@dataclass
class FoldingModelBase:
    """What every loaded folding model has; each family adds the folding interface.

    The interface (all a runner, the atlas build, the service or a Ray worker uses):
    ``check_options(FoldOptions)``, ``run_settings(FoldOptions) -> dict`` (what runs, every default
    resolved, recorded in outputs), ``fold_batch(records, FoldOptions) -> list[Prediction]``,
    ``batch_tokens(requested)``, ``model_length(record)``, ``estimate_peak_bytes(length, options)``,
    ``default_num_recycles`` and ``precision_note``.

    Attributes
    ----------
    model : torch.nn.Module
        The transformers model.
    name : str
    path : Path
    source : str
    revision : str or None
    device : torch.device
    dtype : torch.dtype
        Dtype of the folding trunk's and heads' weights.
    precision : foldatlas.models.precision.Precision
        What each part computes in (the resolved ``--precision``).
    """

    model: object
    name: str
    path: Path
    source: str
    revision: str | None
    device: object
    dtype: object
    _sha256: str | None = None
    precision: object = None  # foldatlas.models.precision.Precision, recorded in every output

    @property
    def weights_sha256(self) -> str:
        """SHA-256 over the checkpoint's safetensors files (cached on disk)."""
        if self._sha256 is None:
            self._sha256 = weights_sha256(self.path)
        return self._sha256

    @property
    def num_parameters(self) -> int:
        """Total parameter count."""
        return sum(p.numel() for p in self.model.parameters())


@dataclass
class FoldingModel(FoldingModelBase):
    """A loaded ESMFold v1-architecture model (``transformers.EsmForProteinFolding``)."""

    precision_note: str = ""
    lean_trunk: bool | None = None  # None: transformers' block forward unless the batch needs the lean one to fit

    def configure_trunk(self, length: int, batch: int, chunk_size: int | None) -> bool:
        """Set the trunk blocks' forward for a batch (lean or not, under the precision's autocast).

        Returns
        -------
        bool
            Whether the lean forward runs: as loaded, or (``lean_trunk`` None, GPUs) when transformers' own
            forward would not fit the free memory.
        """
        from foldatlas.models.trunk import configure_trunk
        from foldatlas.predict.memory import available_memory_bytes, estimate_peak_bytes

        lean = self.lean_trunk
        if lean is None:
            need = estimate_peak_bytes(length, batch=batch, chunk_size=chunk_size, lean=False)
            lean = need > 0.9 * available_memory_bytes(self.device)
        configure_trunk(self.model, lean=lean, autocast=getattr(self.precision, "autocast", None))
        return lean

    @property
    def default_num_recycles(self) -> int:
        """Recycles after the first trunk pass when none are asked for: the checkpoint's ``max_recycles`` passes in
        all (transformers runs ``max_recycles`` passes for None and ``n + 1`` for ``n``; ESMFold v1: 3)."""
        return int(self.model.config.esmfold_config.trunk.max_recycles) - 1

    def check_options(self, options) -> None:
        """Refuse the options of other model families (InvalidOptionError)."""
        self.check_family_options(options, self.name)

    @staticmethod
    def check_family_options(options, name: str) -> None:
        """:meth:`check_options` before a model is loaded (``name`` for messages)."""
        for option in ("num_samples", "num_steps", "num_loops", "seed"):
            if getattr(options, option) is not None:
                raise InvalidOptionError(f"{option} applies to ESMFold2 models (it draws samples by diffusion); "
                                         f"'{name}' is an ESMFold v1 model")

    def run_settings(self, options) -> dict:
        """What a fold with ``options`` runs: ``{"num_recycles": n}``."""
        self.check_options(options)
        recycles = self.default_num_recycles if options.num_recycles is None else int(options.num_recycles)
        return {"num_recycles": recycles}

    def batch_tokens(self, max_tokens_per_batch: int) -> int:
        """Padded residues per batch: as asked (records are independent in a padded batch)."""
        return max_tokens_per_batch

    def model_length(self, record) -> int:
        """Positions the model folds: residues plus the glycine linkers between chains."""
        from foldatlas.seq.complexes import LINKER

        return record.length + len(LINKER) * (len(record.chains) - 1)

    def estimate_peak_bytes(self, length: int, options=None, available: int | None = None) -> int:
        """Trunk activation memory at ``length`` positions (see :mod:`foldatlas.predict.memory`), with the
        chunk size ``options`` give or the automatic one for ``available`` bytes (default: free now)."""
        from foldatlas.predict.memory import auto_chunk_size, estimate_peak_bytes

        chunk = getattr(options, "chunk_size", None)
        chunk = chunk if chunk is not None else auto_chunk_size(length, device=self.device, available=available)
        return estimate_peak_bytes(length, chunk_size=chunk)

    def fold_batch(self, records: list, options) -> list:
        """Fold records in one padded batch (:func:`foldatlas.predict.engine.fold_esmfold_batch`)."""
        from foldatlas.predict.engine import fold_esmfold_batch

        return fold_esmfold_batch(self, records, options)


def _hash_cache_file() -> Path:
    root = Path(os.environ.get("FOLDATLAS_CACHE", Path.home() / ".cache" / "foldatlas"))
    return root / "weights-sha256.json"


def weights_sha256(folder: str | Path) -> str:
    """SHA-256 identifying a checkpoint's weights.

    The digest of the lines ``"{file name} {file sha256}"`` over the sorted
    ``*.safetensors`` files. Hub-cache files are named by their SHA-256 already;
    other files are hashed once and cached by path, size and modification time.
    """
    cache_file = _hash_cache_file()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    lines, changed = [], False
    for f in sorted(Path(folder).glob("*.safetensors")):
        target = f.resolve()
        if f.is_symlink() and len(target.name) == 64 and all(c in "0123456789abcdef" for c in target.name):
            digest = target.name  # huggingface_hub stores LFS blobs under their sha256
        else:
            st = target.stat()
            key = f"{target}:{st.st_size}:{st.st_mtime_ns}"
            digest = cache.get(key)
            if digest is None:
                digest = cache[key] = sha256_file(target)
                changed = True
        lines.append(f"{f.name} {digest}\n")
    if changed:
        try:
            atomic_write_text(cache_file, json.dumps(cache, indent=0))
        except OSError:
            pass  # a read-only home only costs a re-hash next time
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def stream_lm_layers(esm_model, compute_dtype, layers=None) -> int:
    """Run a 16-bit ESM-2 (or ESM C) in ``compute_dtype`` one layer at a time.

    Small modules (embeddings, final layer norm, rotary buffers) are converted
    for good; each transformer layer's weights stay 16-bit and are converted
    just before the layer runs and dropped right after (:func:`install_layer_weights`).

    Parameters
    ----------
    esm_model : transformers.EsmModel or EsmcModel
    compute_dtype : torch.dtype
    layers : sequence of torch.nn.Module, optional
        The transformer layers to stream (default: ESM-2's ``encoder.layer``; ESM C's are ``layers``).

    Returns
    -------
    int
        The number of layers streamed (0 if the weights were already in
        ``compute_dtype``).
    """
    layers = list(esm_model.encoder.layer if layers is None else layers)
    if not layers or next(layers[0].parameters()).dtype == compute_dtype:
        return 0
    convert_outside_layers(esm_model, layers, compute_dtype)
    stored = [[(sub, name, param) for sub in layer.modules() for name, param in sub.named_parameters(recurse=False)]
              for layer in layers]

    def weights(index: int):
        return [(sub, name, param.detach().to(compute_dtype)) for sub, name, param in stored[index]]

    return install_layer_weights(layers, weights, compute_dtype)


def convert_outside_layers(model, layers, compute_dtype) -> None:
    """Convert for good every parameter and floating buffer of ``model`` outside ``layers``, and the floating
    buffers inside them (rotary tables), to ``compute_dtype``."""
    layer_ids = {id(m) for layer in layers for m in layer.modules()}
    for module in model.modules():
        if id(module) in layer_ids:
            continue
        for pname, param in module.named_parameters(recurse=False):
            param.data = param.data.to(compute_dtype)
        for bname, buf in module.named_buffers(recurse=False):
            if buf.is_floating_point():
                setattr(module, bname, buf.to(compute_dtype))
    for layer in layers:
        for module in layer.modules():
            for bname, buf in module.named_buffers(recurse=False):
                if buf.is_floating_point():
                    setattr(module, bname, buf.to(compute_dtype))


def install_layer_weights(layers, weights, compute_dtype) -> int:
    """Give each layer its compute weights only while it runs.

    Parameters
    ----------
    layers : sequence of torch.nn.Module
    weights : callable
        ``weights(index)`` returns ``[(submodule, parameter name, tensor)]``: the tensors the layer at
        ``index`` computes with (converted from 16-bit storage, or read from disk).
    compute_dtype : torch.dtype
        Floating positional inputs of a layer are cast to it.

    Returns
    -------
    int
        The number of layers.

    Notes
    -----
    Thread-safe: threads running the same layer at once share one set of compute weights (a count
    per layer, under a lock), which go back to the stored parameters when the last one leaves, even
    if the forward raised.
    """
    import threading

    import torch

    for index, layer in enumerate(layers):
        state = {"count": 0, "saved": None, "lock": threading.Lock()}

        def enter(module, args, kwargs, index=index, state=state):
            with state["lock"]:
                if state["count"] == 0:
                    saved = []
                    for sub, name, tensor in weights(index):
                        saved.append((sub, name, sub._parameters[name]))
                        sub._parameters[name] = torch.nn.Parameter(tensor, requires_grad=False)
                    state["saved"] = saved
                state["count"] += 1
            cast = tuple(a.to(compute_dtype) if hasattr(a, "is_floating_point") and a.is_floating_point() else a
                         for a in args)
            return cast, kwargs

        def leave(module, args, kwargs, output, state=state):
            with state["lock"]:
                state["count"] -= 1
                if state["count"] == 0:
                    for sub, name, param in state["saved"]:
                        sub._parameters[name] = param
                    state["saved"] = None
            return output

        layer.register_forward_pre_hook(enter, with_kwargs=True)
        layer.register_forward_hook(leave, with_kwargs=True, always_call=True)
    return len(layers)


def check_device_options(device: str, dtype: str | None = None, precision: str = "auto"):
    """The torch device and dtype that ``--device`` and ``--dtype`` name, checked with ``--precision`` before
    anything loads.

    Returns
    -------
    (torch.device, torch.dtype)

    Raises
    ------
    InvalidOptionError
        If the dtype or precision is unknown, the device unknown or absent on this machine, or the dtype and
        the precision contradict each other.
    """
    import torch

    from foldatlas.models.precision import resolve_precision

    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    dtype = dtype or "float32"
    if dtype not in dtypes:
        raise InvalidOptionError(f"unknown dtype '{dtype}': use one of {', '.join(dtypes)}")
    try:
        dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                           ("cpu" if device == "auto" else device))
    except RuntimeError as e:
        raise InvalidOptionError(f"unknown device '{device}': use auto, cpu, cuda or cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidOptionError(f"device '{device}': no CUDA device is available to this torch build "
                                 f"(torch {torch.__version__}); use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise InvalidOptionError(f"device '{device}' is not supported: use auto, cpu, cuda or cuda:N")
    resolve_precision(precision, dev, dtype)
    return dev, dtypes[dtype]


def from_pretrained_quietly(model_class, folder, name: str, **kwargs):
    """``model_class.from_pretrained(folder, use_safetensors=True, **kwargs)`` without transformers' progress bars
    and warnings.

    Raises
    ------
    WeightsIntegrityError
        Naming the model, whatever safetensors, torch or transformers raised on a bad checkpoint.
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model_class.from_pretrained(str(folder), use_safetensors=True, **kwargs)
    except Exception as e:  # safetensors, torch and transformers raise many types on bad files
        raise WeightsIntegrityError(f"model '{name}': cannot load weights from {folder} "
                                    f"({str(e).splitlines()[0] if str(e) else e.__class__.__name__})") from e
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def check_fold_options(name: str, options) -> None:
    """Refuse, before anything loads, options that the named folding model's family does not have.

    Raises
    ------
    InvalidOptionError
        An option of the other family (``--num-samples`` for ESMFold v1, ``--num-recycles`` for ESMFold2, ...).
    UnknownModelError, WeightsNotFoundError, WeightsIntegrityError
        As :func:`foldatlas.models.resolve_model`.
    """
    resolved = resolve_model(name)
    if _model_type(resolved.path) == "esmfold2":
        from foldatlas.models.esmfold2 import Esmfold2FoldingModel

        Esmfold2FoldingModel.check_family_options(options, resolved.name)
    else:
        FoldingModel.check_family_options(options, resolved.name)


def _model_type(folder: Path) -> str | None:
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None  # reported as an unreadable config by the loader


def load_folding_model(name: str, device: str = "auto", dtype: str | None = None, threads: int | None = None,
                       lean_trunk: bool | None = None, lm_offload: bool | None = None,
                       precision: str = "auto") -> FoldingModel:
    """Load a folding model (ESMFold v1 or ESMFold2 architecture) by name, hub id or folder.

    The architecture is read from ``config.json``'s ``model_type``: ``esmfold2`` loads through
    :func:`foldatlas.models.esmfold2.load_esmfold2`, anything else as ESMFold v1.

    Parameters
    ----------
    name : str
        See :func:`foldatlas.models.resolve_model`.
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    dtype : {"float32", "bfloat16", "float16"}, optional
        An explicit dtype for the folding trunk's and heads' weights (precision mode ``custom`` unless float32).
    threads : int, optional
        CPU threads for torch (default: torch's own choice).
    lean_trunk : bool, optional
        Run the trunk blocks with :func:`foldatlas.models.trunk.lean_block_forward` (same outputs, about half
        the activation memory). None: always on CPUs; on GPUs only for a batch that would not fit otherwise.
    lm_offload : bool, optional
        ESMFold2 on a CPU: keep ESM C's layers on disk and read each when it runs; None decides by
        their size against the free memory (see :mod:`foldatlas.models.esmfold2`).
    precision : {"auto", "exact", "fast"}
        See :mod:`foldatlas.models.precision`.

    Returns
    -------
    FoldingModel or foldatlas.models.esmfold2.Esmfold2FoldingModel

    Raises
    ------
    UnknownModelError, WeightsNotFoundError, WeightsIntegrityError, InvalidOptionError
    """
    import torch
    from transformers import EsmConfig, EsmForProteinFolding

    from foldatlas.models.precision import resolve_precision

    dev, _ = check_device_options(device, dtype)
    wanted = resolve_precision(precision, dev, dtype)
    resolved: ResolvedModel = resolve_model(name)
    if threads:
        torch.set_num_threads(int(threads))
    if _model_type(resolved.path) == "esmfold2":
        from foldatlas.models.esmfold2 import load_esmfold2

        return load_esmfold2(resolved, name, dev, wanted, lm_offload=lm_offload)
    try:
        config = EsmConfig.from_pretrained(resolved.path)
    except (OSError, ValueError) as e:
        raise WeightsIntegrityError(f"model '{name}': unreadable config.json in {resolved.path} ({e})") from e
    if not getattr(config, "is_folding_model", False) or config.esmfold_config is None:
        raise WeightsIntegrityError(f"model '{name}': {resolved.path} is not an ESMFold checkpoint "
                                    f"(config.json has no esmfold_config)")
    model = from_pretrained_quietly(EsmForProteinFolding, resolved.path, name, config=config)
    model, done = prepare_esmfold(model, dev, wanted, lean_trunk)
    return FoldingModel(model=model, name=resolved.name, path=resolved.path, source=resolved.source,
                        revision=resolved.revision, device=dev, dtype=getattr(torch, done.trunk), precision=done,
                        lean_trunk=True if lean_trunk is None and dev.type == "cpu" else lean_trunk)


def prepare_esmfold(model, device, precision, lean_trunk: bool | None = None):
    """Put a loaded ``EsmForProteinFolding`` on ``device`` in a resolved precision, for inference.

    Parameters
    ----------
    model : transformers.EsmForProteinFolding
        As loaded: the language model in its stored dtype (16-bit in the released checkpoint).
    device : torch.device
    precision : foldatlas.models.precision.Precision
    lean_trunk : bool, optional
        As :func:`load_folding_model`.

    Returns
    -------
    (model, Precision)
        The precision with the language model's compute dtype and the kernels actually in use filled in.
    """
    import dataclasses

    import torch

    from foldatlas.models.trunk import configure_trunk

    model.eval()
    model.requires_grad_(False)
    stored = next(model.esm.parameters()).dtype
    model.to(device)
    trunk_dtype = getattr(torch, precision.trunk)
    for child_name, child in model.named_children():  # trunk and heads; the language model keeps its weights
        if child_name != "esm":
            child.to(trunk_dtype)
    for param in model.parameters(recurse=False):
        param.data = param.data.to(trunk_dtype)
    lm = precision.language_model
    if lm == "stored":  # GPUs: 16-bit as stored, float16 for a float32 checkpoint (fair-esm's model.esm.half())
        lm = "float32" if precision.mode == "custom" and stored == torch.float32 else (
            str(stored).removeprefix("torch.") if stored != torch.float32 else "float16")
    lm_dtype = getattr(torch, lm)
    if lm_dtype != stored:
        if stored == torch.float32:
            model.esm.to(lm_dtype)  # a float32 checkpoint: cast for good (half the memory)
        else:
            stream_lm_layers(model.esm, lm_dtype)  # 16-bit storage: each layer converted as it runs
    kernels = False
    if precision.kernels:
        from foldatlas.models.kernels import install_kernels, kernels_available

        kernels = kernels_available(device) and install_kernels(model) == "cuequivariance"
    note = precision.note
    if precision.kernels and not kernels:
        note = "; ".join(filter(None, [note, "fused triangle kernels not installed (pip install 'foldatlas[cuda]')"]))
    configure_trunk(model, lean=device.type == "cpu" if lean_trunk is None else lean_trunk,
                    autocast=precision.autocast)
    return model, dataclasses.replace(precision, language_model=lm, kernels=bool(kernels), note=note)
