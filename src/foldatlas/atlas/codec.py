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
    raw = _direct_bcif(atoms)
    return _compress(raw if raw is not None else _biotite_bcif(atoms))


def _biotite_bcif(atoms) -> bytes:
    """BinaryCIF through biotite's object model, with :func:`_fixed_encodings`."""
    from biotite.structure.io import pdbx

    bcif = pdbx.BinaryCIFFile()
    pdbx.set_structure(bcif, atoms)
    _fixed_encodings(bcif)
    buf = io.BytesIO()
    bcif.write(buf)
    return buf.getvalue()


# What _direct_bcif writes without biotite's object model: an AtomArray with these annotations at most.
_DIRECT_ANNOTATIONS = {"chain_id", "res_id", "ins_code", "res_name", "hetero", "atom_name", "element", "b_factor"}
_PACKED = {(1, True): (np.uint8, 4), (1, False): (np.int8, 1), (2, True): (np.uint16, 5), (2, False): (np.int16, 2)}


def _kernels():
    """The compiled column encoders (:mod:`foldatlas.atlas._codec_kernels`), imported on first use."""
    from foldatlas.atlas import _codec_kernels

    return _codec_kernels


def _packed(values: np.ndarray, byte_count: int) -> tuple[dict, bytes]:
    """BinaryCIF's IntegerPacking + ByteArray of int32 values: each value as a run of the type's extreme then
    the remainder (byte-identical to biotite's)."""
    out, unsigned = _kernels().integer_packing(np.ascontiguousarray(values, dtype=np.int64), byte_count)
    dtype, code = _PACKED[byte_count, bool(unsigned)]
    return ({"byteCount": byte_count, "srcSize": len(values), "isUnsigned": bool(unsigned),
             "kind": "IntegerPacking"}, out.astype(dtype).tobytes())


def _run_length(values: np.ndarray) -> np.ndarray:
    return _kernels().run_length(np.ascontiguousarray(values, dtype=np.int64))


def _delta(values: np.ndarray) -> tuple[dict, np.ndarray]:
    v = values.astype(np.int64)
    return ({"srcType": 3, "origin": int(v[0]), "kind": "Delta"},
            np.diff(v - v[0], prepend=0).astype(np.int32))


def _int_column(values: np.ndarray) -> dict:
    """Delta, run length, 1-byte packing (as :func:`_fixed_encodings` gives integer columns)."""
    delta, d = _delta(values)
    rle = _run_length(d)
    packing, data = _packed(rle, 1)
    return {"data": data, "encoding": [delta, {"srcSize": len(values), "srcType": 3, "kind": "RunLength"}, packing,
                                       {"type": _PACKED[1, packing["isUnsigned"]][1], "kind": "ByteArray"}]}


def _float_column(values: np.ndarray, factor: int) -> dict:
    """Fixed point, delta, 2-byte packing (as :func:`_fixed_encodings` gives float columns)."""
    rounded = np.round(values.astype(np.float64) * factor) / factor
    delta, d = _delta(np.round(rounded * factor).astype(np.int32))
    packing, data = _packed(d, 2)
    return {"data": data, "encoding": [{"factor": factor, "srcType": 33, "kind": "FixedPoint"}, delta, packing,
                                       {"type": _PACKED[2, packing["isUnsigned"]][1], "kind": "ByteArray"}]}


def _string_column(values: np.ndarray) -> dict:
    """A string table in order of first appearance and run-length, 1-byte packed indices."""
    from foldatlas.structure.io import distinct_in_order

    strings, ranks = distinct_in_order(values)
    rle = _run_length(ranks)
    packing, data = _packed(rle, 1)
    offsets = np.cumsum([0] + [len(x) for x in strings.tolist()])
    return {"data": data, "encoding": [{
        "kind": "StringArray",
        "dataEncoding": [{"srcSize": len(values), "srcType": 3, "kind": "RunLength"}, packing,
                         {"type": _PACKED[1, packing["isUnsigned"]][1], "kind": "ByteArray"}],
        "stringData": "".join(strings.tolist()),
        "offsets": np.diff(offsets, prepend=0).astype(np.int32).tobytes(),
        "offsetEncoding": [{"srcType": 3, "origin": 0, "kind": "Delta"}, {"type": 3, "kind": "ByteArray"}]}]}


def _direct_bcif(atoms) -> bytes | None:
    """The BinaryCIF bytes :func:`_biotite_bcif` writes, built from the atoms' arrays directly (about a fifth of
    the time); None for what it does not cover (stacks, bonds, boxes, other annotations, non-finite numbers, a
    single atom), which goes through biotite."""
    import biotite.structure as struc
    import msgpack

    if type(atoms) is not struc.AtomArray or atoms.bonds is not None or atoms.box is not None:
        return None
    names = set(atoms.get_annotation_categories())
    n = atoms.array_length()
    if not names <= _DIRECT_ANNOTATIONS or n < 2 or not np.isfinite(atoms.coord).all():
        return None
    if "b_factor" in names and not np.isfinite(atoms.b_factor).all():
        return None
    if np.abs(atoms.res_id).max() >= 2 ** 31 or np.abs(atoms.coord).max() * 1000 >= 2 ** 31:
        return None
    from foldatlas.structure.io import unique_strings

    chain_ids = atoms.chain_id
    _, first, inverse = unique_strings(chain_ids)
    entity = np.argsort(np.argsort(first)) + 1  # numbered by first appearance, as biotite's set_structure
    atom_id, res_name, chain = (_string_column(atoms.atom_name), _string_column(atoms.res_name),
                                _string_column(chain_ids))
    res_id = _int_column(atoms.res_id)
    ins = atoms.ins_code
    mask_data = lambda m: {"data": m.astype(np.int32).tobytes(), "encoding": [{"type": 3, "kind": "ByteArray"}]}
    columns = [
        ("group_PDB", _string_column(np.where(atoms.hetero, "HETATM", "ATOM")), None),
        ("type_symbol", _string_column(atoms.element), None),
        ("label_atom_id", atom_id, None),
        ("label_alt_id", _string_column(np.full(n, ".")), mask_data(np.ones(n))),
        ("label_comp_id", res_name, None),
        ("label_asym_id", chain, None),
        ("label_entity_id", _int_column(entity[inverse.ravel()]), None),
        ("label_seq_id", res_id, None),
        ("pdbx_PDB_ins_code", _string_column(ins), mask_data(ins == "")),
        ("auth_seq_id", res_id, None),
        ("auth_comp_id", res_name, None),
        ("auth_asym_id", chain, None),
        ("auth_atom_id", atom_id, None),
    ]
    if "b_factor" in names:
        columns.append(("B_iso_or_equiv", _float_column(atoms.b_factor, 100), None))
    columns += [(f"Cartn_{axis}", _float_column(atoms.coord[:, k], _FIXED_POINT[f"Cartn_{axis}"]), None)
                for k, axis in enumerate("xyz")]
    columns += [("pdbx_PDB_model_num", _int_column(np.ones(n, np.int32)), None),
                ("id", _int_column(np.arange(1, n + 1)), None)]
    content = {"dataBlocks": [{"categories": [{
        "rowCount": n, "columns": [{"data": data, "mask": mask, "name": name} for name, data, mask in columns],
        "name": "_atom_site"}], "header": "structure"}], "encoder": "biotite", "version": "0.3.0"}
    return msgpack.packb(content, use_bin_type=True)


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

    Decodes 8 of the 19 columns the atlas writes straight from the BinaryCIF message (its standard encodings, in
    numpy), skipping biotite's object model and general conversion: the structure index decodes every entry. Blobs
    with several models, alternate locations or encodings this does not know go through :func:`decode_structure`.
    """
    import biotite.structure as struc

    site = _atom_site_columns(_decompress(blob))
    plain = site is not None and all(name in site for name in _TRACE_COLUMNS)
    for name in ("pdbx_PDB_model_num", "label_alt_id"):
        if plain and name in site:
            values = site[name]
            plain = values is not None and (len(values) == 0 or bool((values == values[0]).all()))
    if plain:
        columns = {name: site[name] for name in _TRACE_COLUMNS}
        plain = all(v is not None for v in columns.values())
    if not plain:
        return decode_structure(blob)
    atoms = struc.AtomArray(len(columns["Cartn_x"]))
    atoms.coord = np.stack([columns[f"Cartn_{axis}"] for axis in "xyz"], axis=1).astype(np.float32)
    atoms.chain_id = columns["auth_asym_id"].astype(str)
    atoms.res_id = columns["auth_seq_id"].astype(np.int64)
    atoms.ins_code = columns["pdbx_PDB_ins_code"].astype(str)
    atoms.res_name = columns["auth_comp_id"].astype(str)
    atoms.atom_name = columns["auth_atom_id"].astype(str)
    atoms.hetero = columns["group_PDB"] == "HETATM"
    return atoms


_DTYPES = {1: np.int8, 2: np.int16, 3: np.int32, 4: np.uint8, 5: np.uint16, 6: np.uint32, 32: np.float32,
           33: np.float64}


def _decoded(data, encodings: list[dict]) -> np.ndarray | None:
    """A BinaryCIF column's values from its data and encodings (None for an encoding not handled here)."""
    for enc in reversed(encodings):
        kind = enc.get("kind")
        if kind == "ByteArray":
            data = np.frombuffer(data, dtype=np.dtype(_DTYPES[enc["type"]]).newbyteorder("<"))
        elif kind == "IntegerPacking":
            info = np.iinfo(_PACKED[enc["byteCount"], enc["isUnsigned"]][0])
            v = data.astype(np.int64)
            carry = (v == info.max) | ((v == info.min) & (info.min != 0))
            total = np.cumsum(v)[~carry]
            data = np.diff(total, prepend=0)
            if len(data) != enc["srcSize"]:
                return None
        elif kind == "RunLength":
            data = np.repeat(data[0::2], data[1::2].astype(np.int64))
            if len(data) != enc["srcSize"]:
                return None
        elif kind == "Delta":
            data = np.cumsum(data, dtype=np.int64) + enc["origin"]
        elif kind == "FixedPoint":
            data = (data / enc["factor"]).astype(_DTYPES[enc["srcType"]])
        elif kind == "StringArray":
            indices = _decoded(data, enc["dataEncoding"])
            offsets = _decoded(enc["offsets"], enc["offsetEncoding"])
            if indices is None or offsets is None:
                return None
            text = enc["stringData"]
            table = np.array([text[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())] + [""])
            data = table[np.where(indices < 0, len(table) - 1, indices)]
        else:
            return None
    return data


def _atom_site_columns(raw: bytes) -> dict | None:
    """The atom_site columns of a one-block BinaryCIF message (masked strings as ""), each None where its encoding
    is not handled here; None when the message is not of that shape."""
    import msgpack

    try:
        content = msgpack.unpackb(raw, raw=False)
        blocks = content["dataBlocks"]
        site = [c for c in blocks[0]["categories"] if c["name"] == "_atom_site"] if len(blocks) == 1 else []
    except (ValueError, KeyError, TypeError, IndexError, msgpack.ExtraData):
        return None
    if len(site) != 1:
        return None
    out = {}
    for column in site[0]["columns"]:
        values = _decoded(column["data"]["data"], column["data"]["encoding"])
        mask = column.get("mask")
        if values is not None and mask is not None:
            masked = _decoded(mask["data"], mask["encoding"])
            if masked is None or values.dtype.kind != "U":
                values = None if masked is None or masked.any() else values
            else:
                values = np.where(masked != 0, "", values)
        out[column["name"]] = values
    return out


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
