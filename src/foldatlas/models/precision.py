"""Precision modes: what a fold computes in, per device, in one table.

==========================  ==========================================  ==========================================
device                      ``exact``                                   ``fast``
==========================  ==========================================  ==========================================
CPU without native bf16     float32 everywhere                          the same as ``exact``: bfloat16 is emulated
(AVX2 only)                                                             there (0.9 against 95 GFLOP/s on a 1024^2
                                                                        matrix product, 2-core AVX2 EPYC)
CPU with native bf16        float32 everywhere                          trunk blocks under bfloat16 autocast (matrix
(AVX-512 BF16 or AMX)                                                   products in bfloat16, reductions and norms in
                                                                        float32); language model, structure module
                                                                        and heads in float32 (a bfloat16 language
                                                                        model moved pLDDT past the tolerance aim)
CUDA GPU                    float32 everywhere, TF32 off (the language  language model in its stored 16-bit dtype
                            model's 16-bit weights are converted to     (float16 if stored in float32); trunk blocks
                            float32 one layer at a time)                under bfloat16 autocast; TF32 for the rest;
                                                                        fused triangle kernels (cuEquivariance) where
                                                                        installed
==========================  ==========================================  ==========================================

ESMFold2 follows the same table with transformers' recommended bfloat16 checkpoint precision as its fast mode
(the whole model loaded in bfloat16; transformers keeps its float32-only modules in float32).

``auto`` (the default) resolves to ``exact`` on CPUs and to ``fast`` on CUDA devices; README.md and BENCHMARKS.md
give the measurements behind that choice. Every output records the resolved :class:`Precision`.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from foldatlas.errors import InvalidOptionError

__all__ = ["MODES", "NO_NATIVE_BF16", "Precision", "resolve_precision", "cpu_has_native_bf16", "default_mode",
           "matmul_precision"]

MODES = ("auto", "exact", "fast")

NO_NATIVE_BF16 = ("this CPU has no native bfloat16 (no AVX-512 BF16 or AMX): bfloat16 matrix products are emulated "
                  "there, about 100x slower than float32")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), read from ``/proc/cpuinfo``.

    ``FOLDATLAS_ASSUME_NATIVE_BF16=1`` (or ``0``) overrides it: benchmarks and tests use it to run the fast
    mode's arithmetic on any CPU (slowly where it is emulated) and measure its numbers.
    """
    forced = os.environ.get("FOLDATLAS_ASSUME_NATIVE_BF16", "")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class Precision:
    """A resolved precision mode: what each part of a fold computes in.

    Attributes
    ----------
    mode : {"exact", "fast", "custom"}
        ``custom``: an explicit ``--dtype`` other than float32 (the trunk's weights in that dtype).
    requested : str
        What was asked for (``auto``, ``exact``, ``fast`` or ``--dtype ...``).
    device : str
        ``cpu`` or ``cuda``.
    language_model : str
        Compute dtype of the language model (``float32``, ``bfloat16``, ``float16``, or ``stored``: its stored
        16-bit dtype, known once the weights are loaded).
    trunk : str
        Dtype of the folding trunk's weights.
    autocast : str or None
        ``bfloat16`` when the trunk blocks run under autocast (matrix products in bfloat16).
    tf32 : bool
        TF32 matrix products for float32 work (CUDA only).
    kernels : bool
        Fused triangle kernels: wanted (as resolved), then in use (as loaded: installed on this device; each call
        still falls back to PyTorch where the kernel does not support its shape).
    note : str
        Why, where the mode differs from what was asked.
    """

    mode: str
    requested: str
    device: str
    language_model: str = "float32"
    trunk: str = "float32"
    autocast: str | None = None
    tf32: bool = False
    kernels: bool = False
    note: str = ""

    def as_dict(self) -> dict:
        """The record written into every output's JSON and manifest."""
        return asdict(self)

    def describe(self) -> str:
        """One line for logs and notes."""
        parts = [f"language model {self.language_model}", f"trunk {self.trunk}"]
        if self.autocast:
            parts.append(f"{self.autocast} autocast in the trunk blocks")
        if self.tf32:
            parts.append("TF32")
        if self.kernels:
            parts.append("fused triangle kernels where installed")
        return f"precision {self.mode}: " + ", ".join(parts) + (f" ({self.note})" if self.note else "")


def default_mode(device_type: str) -> str:
    """What ``auto`` resolves to: ``fast`` on CUDA devices, ``exact`` on CPUs (see the module docstring)."""
    return "fast" if device_type == "cuda" else "exact"


def resolve_precision(mode: str, device, dtype: str | None = None, native_bf16: bool | None = None) -> Precision:
    """Resolve a precision mode for a device.

    Parameters
    ----------
    mode : {"auto", "exact", "fast"}
    device : torch.device or str
    dtype : {"float32", "bfloat16", "float16"}, optional
        An explicit trunk dtype (``--dtype``); anything but float32 makes the mode ``custom`` and cannot be
        combined with ``fast``.
    native_bf16 : bool, optional
        Override the CPU's capability (benchmarks measure the fast mode's numbers on any CPU with it).

    Returns
    -------
    Precision

    Raises
    ------
    InvalidOptionError
        An unknown mode, or ``fast`` with an explicit 16-bit dtype.
    """
    if mode not in MODES:
        raise InvalidOptionError(f"unknown precision '{mode}': use one of {', '.join(MODES)}")
    device_type = getattr(device, "type", str(device).split(":")[0])
    if dtype not in (None, "float32"):
        if mode == "fast":
            raise InvalidOptionError(f"--dtype {dtype} and --precision fast cannot be combined: the fast mode "
                                     f"chooses its own dtypes; use one of them")
        lm = "float32" if device_type == "cpu" else "stored"
        return Precision(mode="custom", requested=f"--dtype {dtype}", device=device_type, language_model=lm,
                         trunk=dtype)
    resolved = default_mode(device_type) if mode == "auto" else mode
    if resolved == "exact":
        return Precision(mode="exact", requested=mode, device=device_type)
    if device_type == "cuda":
        return Precision(mode="fast", requested=mode, device="cuda", language_model="stored", autocast="bfloat16",
                         tf32=True, kernels=True)
    native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    if not native:
        return Precision(mode="exact", requested=mode, device=device_type,
                         note=NO_NATIVE_BF16 + ", so fast runs as exact")
    return Precision(mode="fast", requested=mode, device=device_type, language_model="float32",
                     autocast="bfloat16")


_TF32 = {"lock": threading.Lock(), "users": 0, "saved": None}


@contextmanager
def matmul_precision(precision):
    """TF32 for float32 matrix products on CUDA while folds with ``precision`` run; the previous setting comes
    back when the last of them (threads of the service included) ends."""
    import torch

    if not getattr(precision, "tf32", False):
        yield
        return
    with _TF32["lock"]:
        if _TF32["users"] == 0:
            _TF32["saved"] = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        _TF32["users"] += 1
    try:
        yield
    finally:
        with _TF32["lock"]:
            _TF32["users"] -= 1
            if _TF32["users"] == 0:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = _TF32["saved"]
