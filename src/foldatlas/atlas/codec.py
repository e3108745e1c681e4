"""How an atlas entry's payload is stored: checksums, structures and arrays as compact blobs.

Chosen by measurement (``benchmarks/atlas/bench_codec.py``, numbers in BENCHMARKS.md):

* **structure**: BinaryCIF (the PDB's and AlphaFold DB's compact mmCIF encoding, written by
  biotite), then zstd. Each column gets a fixed chain of BinaryCIF's standard encodings by its type
  (numbers: fixed point at PDB precision, delta, run length, packed into 1- or 2-byte integers;
  strings: a string table with run-length, byte-packed indices), which zstd then squeezes: 7-23%
  smaller than biotite's per-column search of the smallest chain (``pdbx.compress``) followed by
  zstd, at a fifth of its cost (10.5 against 51 ms per CASP14 domain, same run). Coordinates are
  kept at 0.001 Å and B-factors and occupancies at 0.01, like a PDB file; about a quarter of the
  size of zstd-compressed PDB text, and decodes about ten times faster. Blobs written with other
  encodings (older atlases) decode the same way: BinaryCIF names its encodings.
* **pLDDT**: per residue as uint16 hundredths (the 0.01 precision of the written files).
* **PAE**: uint8 in steps of 1/8 Å (ESMFold's PAE spans 0-31.75 Å, its bins are 0.5 Å wide), so
  a stored value is within 0.0625 Å of the model's; zstd-compressed. Optional per entry.
* **embedding**: float16, as the ESM Atlas serves its ``.bin`` embeddings.

Imports neither torch nor transformers.
"""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache

import numpy as np

__all__ = ["sequence_md5", "sequence_crc64", "encode_structure", "decode_structure", "decode_trace_atoms",
           "decode_bcif", "encode_plddt",
           "decode_plddt", "encode_pae", "decode_pae", "encode_embedding", "decode_embedding", "PAE_STEP"]

PAE_STEP = 0.125  # Å per uint8 step
_ZSTD_LEVEL = 9


@lru_cache(maxsize=1)
def _compressor():
    import zstandard

    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL)


def _compress(data: bytes) -> bytes:
    return _compressor().compress(data)


def _decompress(data: bytes) -> bytes:
    import zstandard

    # A decompressor per call: zstandard's objects are not safe to share between threads.
    return zstandard.ZstdDecompressor().decompress(data)


def sequence_md5(sequence: str) -> str:
    """The atlas key of a sequence: MD5 hex of the upper-case sequence (chains joined by ``:``).

    Examples
    --------
    >>> sequence_md5("MKT")
    '5c333fb1471d21ab5a236c2ff2c70faa'
    """
    return hashlib.md5(sequence.encode("ascii")).hexdigest()


def _crc64_table() -> list[int]:
    # CRC-64-ISO (polynomial x^64 + x^4 + x^3 + x + 1, reflected), as UniProt and SwissProt use.
    poly = 0xD800000000000000
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC64 = _crc64_table()


def sequence_crc64(sequence: str) -> str:
    """CRC64 (ISO) of a sequence as 16 upper-case hex digits, UniProt's sequence checksum.

    A hand-written loop over a 256-entry table: the ESM Atlas metadata uses this checksum and no
    maintained small library provides it (Biopython's ``crc64`` would pull in all of Biopython).

    Examples
    --------
    UniProt's checksum of human haemoglobin alpha (P69905):

    >>> sequence_crc64("MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTKTYFPHFDLSHGSAQVKGHGKKVADALTNAVAHVDDMPNALSALSDL"
    ...                "HAHKLRVDPVNFKLLSHCLLVTLAAHLPAEFTPAVHASLDKFLASVSTVLTSKYR")
    '15E13666573BBBAE'
    """
    crc = 0
    for byte in sequence.encode("ascii"):
        crc = _CRC64[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return f"{crc:016X}"


def encode_structure(atoms) -> bytes:
    """A biotite ``AtomArray`` (with ``b_factor``) as zstd-compressed BinaryCIF."""
    from biotite.structure.io import pdbx

    bcif = pdbx.BinaryCIFFile()
    pdbx.set_structure(bcif, atoms)
    _fixed_encodings(bcif)
    buf = io.BytesIO()
    bcif.write(buf)
    return _compress(buf.getvalue())


# Fixed-point factors of float columns: coordinates at 0.001 Å, everything else (B-factors, occupancy) at 0.01.
_FIXED_POINT = {"Cartn_x": 1000, "Cartn_y": 1000, "Cartn_z": 1000}


def _fixed_encodings(bcif) -> None:
    """Give every column of a BinaryCIF file a fixed encoding chain by its type (in place)."""
    from biotite.structure.io.pdbx import BinaryCIFColumn, BinaryCIFData
    from biotite.structure.io.pdbx.encoding import (ByteArrayEncoding, DeltaEncoding, FixedPointEncoding,
                                                    IntegerPackingEncoding, RunLengthEncoding, StringArrayEncoding)

    for block in bcif.values():
        for category in block.values():
            for name, column in list(category.items()):
                array = column.data.array
                if len(array) <= 1:
                    continue
                if array.dtype.kind == "U":
                    encoding = [StringArrayEncoding(
                        data_encoding=[RunLengthEncoding(), IntegerPackingEncoding(1), ByteArrayEncoding()],
                        offset_encoding=[DeltaEncoding(), ByteArrayEncoding()])]
                elif array.dtype.kind == "f":
                    if not np.isfinite(array).all():
                        continue  # kept as raw floats
                    factor = _FIXED_POINT.get(name, 100)
                    array = np.round(array.astype(np.float64) * factor) / factor
                    encoding = [FixedPointEncoding(factor), DeltaEncoding(), IntegerPackingEncoding(2),
                                ByteArrayEncoding()]
                elif array.dtype.kind in "iu" and array.size and np.abs(array).max() < 2 ** 31:
                    array = array.astype(np.int32)
                    encoding = [DeltaEncoding(), RunLengthEncoding(), IntegerPackingEncoding(1), ByteArrayEncoding()]
                else:
                    continue
                category[name] = BinaryCIFColumn(BinaryCIFData(array, encoding), column.mask)


def decode_structure(blob: bytes):
    """The ``AtomArray`` of :func:`encode_structure` (with ``b_factor``)."""
    from biotite.structure.io import pdbx

    bcif = pdbx.BinaryCIFFile.read(io.BytesIO(_decompress(blob)))
    return pdbx.get_structure(bcif, model=1, extra_fields=["b_factor"])


def decode_trace_atoms(blob: bytes):
    """The atoms of :func:`decode_structure` with only what chain traces and 3Di states need: coordinates, chain
    id, residue number, insertion code, residue name, atom name and the hetero flag (no B-factors, elements or
    charges).

    Decodes 8 of the 19 columns the atlas writes and skips biotite's general conversion: about half the time of
    :func:`decode_structure` (the structure index decodes every entry). Blobs with several models or alternate
    locations (not written by the atlas) go through :func:`decode_structure`.
    """
    import biotite.structure as struc
    from biotite.structure.io import pdbx

    site = pdbx.BinaryCIFFile.read(io.BytesIO(_decompress(blob))).block["atom_site"]
    plain = all(name in site for name in _TRACE_COLUMNS)
    for name in ("pdbx_PDB_model_num", "label_alt_id"):
        if plain and name in site:
            values = site[name].as_array(str, masked_value="")
            plain = len(values) == 0 or bool((values == values[0]).all())
    if not plain:
        return decode_structure(blob)
    atoms = struc.AtomArray(site.row_count)
    atoms.coord = np.stack([site[f"Cartn_{axis}"].as_array(np.float32) for axis in "xyz"], axis=1)
    atoms.chain_id = site["auth_asym_id"].as_array(str)
    atoms.res_id = site["auth_seq_id"].as_array(int)
    atoms.ins_code = site["pdbx_PDB_ins_code"].as_array(str, masked_value="")
    atoms.res_name = site["auth_comp_id"].as_array(str)
    atoms.atom_name = site["auth_atom_id"].as_array(str)
    atoms.hetero = site["group_PDB"].as_array(str) == "HETATM"
    return atoms


_TRACE_COLUMNS = ("Cartn_x", "Cartn_y", "Cartn_z", "auth_asym_id", "auth_seq_id", "pdbx_PDB_ins_code", "auth_comp_id",
                  "auth_atom_id", "group_PDB")


def decode_bcif(blob: bytes) -> bytes:
    """The stored BinaryCIF bytes of a structure blob (for ``.bcif`` downloads)."""
    return _decompress(blob)


def encode_plddt(plddt: np.ndarray) -> bytes:
    """Per-residue pLDDT (0-100) as uint16 hundredths."""
    return np.round(np.clip(np.asarray(plddt, dtype=np.float64), 0, 100) * 100).astype("<u2").tobytes()


def decode_plddt(blob: bytes) -> np.ndarray:
    """float32 pLDDT (0-100), shape (L,)."""
    return (np.frombuffer(blob, dtype="<u2").astype(np.float32) / 100).astype(np.float32)


def encode_pae(pae: np.ndarray) -> bytes:
    """A PAE matrix (Å, shape (L, L)) as zstd-compressed uint8 steps of :data:`PAE_STEP`."""
    q = np.round(np.clip(np.asarray(pae, dtype=np.float64), 0, 255 * PAE_STEP) / PAE_STEP).astype(np.uint8)
    return _compress(q.tobytes())


def decode_pae(blob: bytes, length: int) -> np.ndarray:
    """float32 PAE (Å), shape (length, length)."""
    q = np.frombuffer(_decompress(blob), dtype=np.uint8)
    if q.size != length * length:
        raise ValueError(f"PAE blob holds {q.size} values, expected {length}x{length}")
    return (q.astype(np.float32) * PAE_STEP).reshape(length, length)


def encode_embedding(embedding: np.ndarray) -> bytes:
    """A mean embedding as little-endian float16."""
    return np.asarray(embedding, dtype="<f2").tobytes()


def decode_embedding(blob: bytes) -> np.ndarray:
    """float32 embedding, shape (D,)."""
    return np.frombuffer(blob, dtype="<f2").astype(np.float32)
