"""Memory estimates: the automatic chunk size and the longest foldable sequence.

The trunk's triangle attention materialises logits of shape
``[B, L, heads, L, L]`` (4 heads of width 32 in ESMFold v1): 17 GB at L = 1024
unchunked. Chunking its rows bounds that to ``chunk * heads * L * L`` floats at
a small cost in speed. The pair representation itself, ``[B, L, L, 128]``
float32, and a handful of tensors of the same size remain: with the lean block
forward (:mod:`foldatlas.models.trunk`), ESMFold v1 at 1,792 residues peaked
10.4 GiB above the loaded model (``benchmarks/predict/bench_max_length.py``,
BENCHMARKS.md), which this estimate puts at 12.2 GiB: six pair-sized tensors
plus the chunked attention.
"""

from __future__ import annotations

import os

__all__ = ["available_memory_bytes", "auto_chunk_size", "estimate_peak_bytes", "longest_fitting"]

_PAIR_TEMPORARIES = 6  # [B, L, L, c_z] float32 tensors live at the peak (with the chunked attention: a margin)
_PAIR_TEMPORARIES_PLAIN = 11  # transformers' own block forward: about ten (models/trunk.py), plus a margin
_HEADS = 4


def available_memory_bytes(device=None) -> int:
    """Free memory of the device: CUDA free memory, else ``MemAvailable`` (or cgroup limit)."""
    if device is not None and getattr(device, "type", str(device)).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def _attention_bytes(length: int, rows: int, batch: int = 1, bytes_per_value: int = 4) -> int:
    """Triangle-attention logits and their softmax for ``rows`` query rows: [B, rows, heads, L, L] twice."""
    return 2 * batch * rows * _HEADS * length * length * bytes_per_value


def estimate_peak_bytes(length: int, batch: int = 1, chunk_size: int | None = None,
                        pair_dim: int = 128, bytes_per_value: int = 4, lean: bool = True) -> int:
    """Activation memory of the trunk for a batch of ``length``-residue inputs (weights excluded), with the lean
    block forward or (``lean=False``) transformers' own."""
    pair = batch * length * length * pair_dim * bytes_per_value
    rows = length if not chunk_size else min(chunk_size, length)
    temporaries = _PAIR_TEMPORARIES if lean else _PAIR_TEMPORARIES_PLAIN
    return temporaries * pair + _attention_bytes(length, rows, batch, bytes_per_value)


def longest_fitting(need, budget: float, ceiling: int = 1 << 20) -> int:
    """The longest length in ``0..ceiling`` whose ``need(length)`` (bytes, growing with the length) fits ``budget``."""
    low, high = 0, ceiling
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if need(mid) <= budget else (low, mid - 1)
    return low


def auto_chunk_size(length: int, batch: int = 1, device=None, budget_fraction: float = 0.25,
                    available: int | None = None) -> int:
    """Largest chunk (power of two, 0 = no chunking) keeping attention within a budget.

    The budget is ``budget_fraction`` of the free memory; short inputs are not
    chunked since chunking costs time. ``available`` (bytes) skips reading the
    free memory again when the caller has it.
    """
    budget = (available_memory_bytes(device) if available is None else available) * budget_fraction
    if _attention_bytes(length, length, batch) <= budget:
        return 0
    chunk = 128
    while chunk > 1 and _attention_bytes(length, chunk, batch) > budget:
        chunk //= 2
    return chunk
