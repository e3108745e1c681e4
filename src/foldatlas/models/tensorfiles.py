"""Reading safetensors checkpoints one tensor at a time, with plain file reads.

A safetensors file is an 8-byte little-endian header length, a JSON header (each tensor's dtype,
shape and byte offsets) and the raw data. :class:`TensorFiles` reads the headers of a
checkpoint folder once and then any single tensor with one ``seek`` + ``readinto``: no memory map,
so nothing of the file stays in the process's resident memory after the tensor is dropped (the
operating system's page cache may keep it, which costs no process memory and makes the next read
fast). foldatlas uses it to keep a large language model on disk and read each layer when it runs.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["TensorFiles", "DTYPE_NAMES"]

# safetensors dtype codes -> torch dtype names
DTYPE_NAMES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64", "I64": "int64",
               "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


class TensorFiles:
    """The tensors of a folder's ``*.safetensors`` files, by name.

    Parameters
    ----------
    folder : str or Path

    Attributes
    ----------
    entries : dict of str to (Path, str, tuple of int, int, int)
        Per tensor: file, dtype name (``"bfloat16"``, ...), shape, absolute start and end byte.
    """

    def __init__(self, folder: str | Path) -> None:
        self.entries: dict[str, tuple[Path, str, tuple[int, ...], int, int]] = {}
        for path in sorted(Path(folder).glob("*.safetensors")):
            with open(path, "rb") as fh:
                size = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(size))
            base = 8 + size
            for key, meta in header.items():
                if key == "__metadata__":
                    continue
                start, end = meta["data_offsets"]
                dtype = DTYPE_NAMES.get(meta["dtype"], str(meta["dtype"]).lower())
                self.entries[key] = (path, dtype, tuple(meta["shape"]), base + start, base + end)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def keys(self):
        """Tensor names."""
        return self.entries.keys()

    def dtype(self, key: str) -> str:
        """The stored dtype name of a tensor."""
        return self.entries[key][1]

    def nbytes(self, prefix: str = "") -> int:
        """Stored bytes of the tensors whose name starts with ``prefix``."""
        return sum(end - start for key, (_, _, _, start, end) in self.entries.items() if key.startswith(prefix))

    def read(self, key: str, dtype=None):
        """One tensor, read from its file (a fresh CPU tensor), optionally converted to ``dtype``.

        Raises
        ------
        KeyError
            If the folder has no such tensor.
        OSError
            If the file cannot be read in full.
        """
        import torch

        path, name, shape, start, end = self.entries[key]
        buffer = bytearray(end - start)
        with open(path, "rb") as fh:
            fh.seek(start)
            if fh.readinto(buffer) != len(buffer):
                raise OSError(f"{path}: truncated while reading {key}")
        tensor = torch.frombuffer(buffer, dtype=getattr(torch, name)) if buffer else \
            torch.empty(0, dtype=getattr(torch, name))
        tensor = tensor.reshape(shape)
        return tensor if dtype is None or tensor.dtype == dtype else tensor.to(dtype)
