"""Reading and writing PDB and mmCIF files through biotite.

Imports neither torch nor transformers. Files may be gzipped; the format is
taken from the suffix, else from the content.
"""

from __future__ import annotations

import functools
import gzip
import io as _io
import warnings
from pathlib import Path

import numpy as np

from foldatlas.errors import InvalidFileError

__all__ = ["read_structure", "to_pdb_string", "to_mmcif_string", "ca_atoms", "ca_trace", "select_chains",
           "residue_keys", "residue_atoms"]


def _sniff_format(name: str, text: str) -> str:
    lowered = name.lower().removesuffix(".gz")
    has_cif = "_atom_site." in text
    has_pdb = text.startswith(("ATOM  ", "HETATM")) or "\nATOM  " in text or "\nHETATM" in text
    if lowered.endswith((".cif", ".mmcif")) and has_cif:
        return "cif"
    if lowered.endswith((".pdb", ".ent")) and has_pdb:
        return "pdb"
    if has_cif:
        return "cif"
    if has_pdb:
        return "pdb"
    raise InvalidFileError(f"{name}: neither PDB nor mmCIF (no ATOM records or _atom_site loop found)")


def read_structure(path: str | Path | None = None, text: str | None = None, name: str | None = None):
    """Read the first model of a PDB or mmCIF file (optionally gzipped).

    Parameters
    ----------
    path : str or Path, optional
        File to read.
    text : str, optional
        File content, instead of a path.
    name : str, optional
        Name for messages and format detection when ``text`` is given.

    Returns
    -------
    biotite.structure.AtomArray
        Amino-acid atoms with a ``b_factor`` annotation; hydrogens removed.

    Raises
    ------
    InvalidFileError
        If the file is missing, unreadable, in another format, or holds no
        protein atoms.
    """
    from biotite.structure.io import pdb, pdbx

    label = str(path) if path is not None else (name or "<structure>")
    if text is None:
        if path is None or not Path(path).is_file():
            raise InvalidFileError(f"{label}: no such file")
        try:
            raw = Path(path).read_bytes()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            text = raw.decode("utf-8", errors="strict")
        except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
            raise InvalidFileError(f"{label}: cannot read as a text structure file ({e.__class__.__name__})") from e
    fmt = _sniff_format(label, text)
    try:
        if fmt == "pdb":
            atoms = _simple_pdb_atoms(text)
            if atoms is None:
                atoms = pdb.PDBFile.read(_io.StringIO(text)).get_structure(model=1, extra_fields=["b_factor"])
        else:
            with warnings.catch_warnings():  # ModelCIF files have no auth_atom_id: biotite uses label_atom_id
                warnings.filterwarnings("ignore", message="Attribute 'auth_.*' not found", category=UserWarning)
                atoms = pdbx.get_structure(pdbx.CIFFile.read(_io.StringIO(text)), model=1,
                                           extra_fields=["b_factor"])
    except InvalidFileError:
        raise
    except Exception as e:  # biotite raises many types on malformed files
        raise InvalidFileError(f"{label}: malformed {fmt.upper()} file ({e})".replace("\n", " ")) from e
    names, _, inverse = unique_strings(atoms.res_name)  # biotite's filter_amino_acids, once per residue name
    amino = _amino_acid_names()
    atoms = atoms[np.array([n in amino for n in names.tolist()], dtype=bool)[inverse] & (atoms.element != "H")]
    if atoms.array_length() == 0 or not np.any(atoms.atom_name == "CA"):
        raise InvalidFileError(f"{label}: no protein atoms found")
    return atoms


@functools.lru_cache(maxsize=1)
def _amino_acid_names() -> frozenset[str]:
    """biotite's amino-acid residue names (its ``filter_amino_acids``), as a set: looked up once per name."""
    from biotite.structure.info import amino_acid_names

    return frozenset(amino_acid_names())


def _simple_pdb_atoms(text: str):
    """The first model of a plain PDB file read by its fixed columns, or None to leave it to biotite.

    biotite's PDB reader works line by line in Python (about 17 ms for a 1,600-atom chain, most of an import's
    time); this reads the same annotations with numpy in about a tenth of that, for the files predictors and
    archives write: no alternate locations, numbers and elements in their columns. Anything else (alternate
    locations, hybrid-36 numbers, a missing element, short lines) returns None and biotite reads the file, so the
    result is always biotite's (tested on the same files).
    """
    import biotite.structure as struc

    raw = _atom_records(text)
    if raw is None:
        return None

    def column(start: int, stop: int) -> np.ndarray:
        return np.ascontiguousarray(raw[:, start:stop]).view(f"S{stop - start}").ravel()

    if (raw[:, 16] != 32).any():  # alternate locations: biotite keeps the first of each residue
        return None
    res_id = _fixed_number(raw, 22, 26, 0)
    xyz = _fixed_number(raw[:, 30:54].reshape(-1, 8), 0, 8, 3)  # x, y and z parsed as one column
    coord = [None] * 3 if xyz is None else list(xyz.reshape(-1, 3).T)
    b_blank = (raw[:, 60:66] == 32).all(axis=1)
    b_factor = _fixed_number(np.where(b_blank[:, None], np.frombuffer(b"  0.00", np.uint8), raw[:, 60:66]), 0, 6, 2)
    if res_id is None or b_factor is None or any(c is None for c in coord):
        try:  # numbers not in their standard layout (%4d, %8.3f, %6.2f): numpy's parser
            res_id = column(22, 26).astype(np.int64)
            coord = [column(a, a + 8).astype(np.float32) for a in (30, 38, 46)]
            b_factor = np.where(b_blank, b"0", column(60, 66)).astype(np.float32)
        except ValueError:
            return None
    element = _stripped(column(76, 78))
    if (element == "").any():
        return None
    atoms = struc.AtomArray(len(raw))
    atoms.coord = np.stack(coord, axis=1).astype(np.float32)
    atoms.chain_id = _stripped(column(21, 22))
    atoms.res_id = res_id.astype(np.int64)
    atoms.ins_code = _stripped(column(26, 27))
    atoms.res_name = _stripped(column(17, 20))
    atoms.hetero = raw[:, 0] == ord("H")
    atoms.atom_name = _stripped(column(12, 16))
    atoms.element = element
    atoms.set_annotation("b_factor", b_factor.astype(np.float32))
    return atoms


def _kernels():
    """The compiled reader kernels (:mod:`foldatlas.structure._pdb_kernels`), imported on first use."""
    from foldatlas.structure import _pdb_kernels

    return _pdb_kernels


def _atom_records(text: str) -> np.ndarray | None:
    """The ATOM/HETATM records of a PDB text's first model as an (n, 80) byte array (lines padded with spaces),
    found in one compiled pass; None for non-ASCII text, lines shorter than 78 columns, or no atoms."""
    try:
        buf = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        return None
    status, raw = _kernels().atom_records(buf)
    return raw if status == 0 else None


def unique_strings(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``numpy.unique(values, return_index=True, return_inverse=True)`` for short strings (str or bytes, up to 9
    characters), found by packing each ASCII string into one integer: several times faster than sorting strings.
    Other strings go to ``numpy.unique`` itself."""
    values = np.asarray(values)
    width = values.dtype.itemsize // (4 if values.dtype.kind == "U" else 1)
    if values.dtype.kind in "US" and 0 < width <= 9 and values.ndim == 1:
        codes = values.view(np.uint32 if values.dtype.kind == "U" else np.uint8).reshape(len(values), width)
        if not len(codes) or codes.max() < 128:
            key = codes.astype(np.int64) @ (128 ** np.arange(width - 1, -1, -1, dtype=np.int64))
            _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
            return values[first], first, inverse.ravel()
    unique, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    return unique, first, inverse.ravel()


def distinct_in_order(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a 1-D string array in order of first appearance, and each value's index among them
    (compiled for ASCII strings of up to 9 characters, :func:`unique_strings` otherwise)."""
    values = np.ascontiguousarray(values)
    width = values.dtype.itemsize // (4 if values.dtype.kind == "U" else 1)
    if values.dtype.kind in "US" and 0 < width <= 9 and values.ndim == 1 and len(values):
        codes = values.view(np.uint32 if values.dtype.kind == "U" else np.uint8).reshape(len(values), width)
        ok, ranks, first = _kernels().first_appearance(codes)
        if ok:
            return values[first], ranks
    unique, first, inverse = unique_strings(values)
    order = np.argsort(first)
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return unique[order], rank[inverse.ravel()]


def _stripped(values: np.ndarray) -> np.ndarray:
    """Fixed-width byte strings as stripped str, converted once per distinct value."""
    if not len(values):
        return np.zeros(0, "U1")
    distinct, index = distinct_in_order(values)
    return np.array([u.decode("ascii").strip() for u in distinct.tolist()])[index]


def _fixed_number(raw: np.ndarray, start: int, stop: int, decimals: int) -> np.ndarray | None:
    """A right-aligned decimal column (``%w.df``, or ``%wd`` with no decimals) of an (n, 80) byte array, parsed
    with integer arithmetic: float64 (int64 without decimals), or None when a field is not in that layout."""
    ok, value = _kernels().fixed_number(np.ascontiguousarray(raw), start, stop, decimals)
    if not ok:
        return None
    return value / 10 ** decimals if decimals else value


def select_chains(atoms, chains: str | list[str] | None, label: str = "structure"):
    """Keep only the given chain ids (comma-separated string or list).

    Raises
    ------
    InvalidFileError
        If a requested chain is absent; the message lists the chains present.
    """
    if not chains:
        return atoms
    wanted = chains.split(",") if isinstance(chains, str) else list(chains)
    present = list(dict.fromkeys(atoms.chain_id.tolist()))
    missing = [c for c in wanted if c not in present]
    if missing:
        raise InvalidFileError(f"{label}: no chain {', '.join(missing)} (chains present: {', '.join(present)})")
    return atoms[np.isin(atoms.chain_id, wanted)]


def ca_atoms(atoms):
    """The Cα atom of each residue, in file order (one per chain, residue number and insertion code)."""
    ca = atoms[atoms.atom_name == "CA"]
    # One Cα per residue: drop alternate locations biotite kept.
    _, first = np.unique(residue_keys(ca), return_index=True)
    return ca[np.sort(first)]


def residue_keys(atoms) -> np.ndarray:
    """One int64 per atom naming its residue (chain id, residue number, insertion code); equal keys, same residue.

    Keys compare equal across calls only for the same chain ids and insertion codes present, so compare keys of
    one ``AtomArray`` (or of subsets of it taken after computing them)."""
    chain = unique_strings(atoms.chain_id)[2].astype(np.int64)
    ins = unique_strings(atoms.ins_code)[2].astype(np.int64)
    res = atoms.res_id.astype(np.int64) + (1 << 31)  # residue numbers may be negative
    return (chain << 40) | (res << 8) | ins


def residue_atoms(atoms, names: tuple[str, ...]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Coordinates of named atoms per residue, residues as :func:`ca_atoms` gives them.

    Returns
    -------
    ca_index : ndarray of int64, shape (L,)
        Index into ``atoms`` of each residue's C-alpha (:func:`ca_atoms` is ``atoms[ca_index]``).
    coords : dict of str to ndarray of float64, shape (L, 3)
        Per name, the atom's coordinates in each residue (its first alternate location), NaN where it is missing.
    """
    keys = residue_keys(atoms)
    ca_index = np.flatnonzero(atoms.atom_name == "CA")
    _, first = np.unique(keys[ca_index], return_index=True)
    ca_index = ca_index[np.sort(first)]  # one C-alpha per residue, in file order
    res_key = keys[ca_index]
    sorter = np.argsort(res_key)
    coords = {}
    for name in names:
        arr = np.full((len(ca_index), 3), np.nan)
        idx = np.flatnonzero(atoms.atom_name == name)
        if idx.size and len(ca_index):
            k, first_of = np.unique(keys[idx], return_index=True)
            pos = np.minimum(np.searchsorted(res_key, k, sorter=sorter), len(res_key) - 1)
            found = res_key[sorter[pos]] == k
            arr[sorter[pos[found]]] = atoms.coord[idx[first_of[found]]]
        coords[name] = arr
    return ca_index, coords


def ca_trace(atoms) -> tuple[np.ndarray, str, np.ndarray]:
    """Cα coordinates, one-letter sequence and chain ids of a structure's residues.

    Returns
    -------
    coords : ndarray of float64, shape (L, 3)
    sequence : str
    chain_ids : ndarray of str, shape (L,)
    """
    from foldatlas.seq.alphabet import RESTYPE_3TO1

    ca = ca_atoms(atoms)
    sequence = "".join(RESTYPE_3TO1.get(r, "X") for r in ca.res_name)
    return ca.coord.astype(np.float64), sequence, ca.chain_id.copy()


def to_pdb_string(atoms, remarks: list[str] | None = None, title: str | None = None) -> str:
    """Write an ``AtomArray`` as PDB text: a TITLE (as AlphaFold DB's files have one), REMARK 250 lines (wrapped,
    never cut), SEQRES records of each chain, the atoms, TER after each chain.

    Parameters
    ----------
    atoms : biotite.structure.AtomArray
    remarks : list of str, optional
        Free text; a remark longer than a PDB line holds goes on over continuation lines.
    title : str, optional
        The TITLE record (wrapped over continuation lines).
    """
    from biotite.structure.io import pdb

    f = pdb.PDBFile()
    f.set_structure(atoms)
    buf = _io.StringIO()
    f.write(buf)
    lines = [line for line in buf.getvalue().splitlines() if line.strip() and line.rstrip() != "END"]
    header = _title_lines(title) + _remark_lines(remarks or []) + _seqres_lines(atoms)
    return "".join(f"{line}\n" for line in header + _with_ter_records(lines) + ["END"])


def _title_lines(title: str | None, width: int = 69) -> list[str]:
    """TITLE records of at most 80 columns: the first holds 70 characters, the continuations (numbered in columns
    9-10, text from column 12) 69; wrapped at the same width for simplicity."""
    import textwrap

    if not title:
        return []
    pieces = textwrap.wrap(title, width=width, break_long_words=True, break_on_hyphens=False)
    return [f"TITLE     {piece}" if k == 0 else f"TITLE   {k + 1:>2d} {piece}" for k, piece in enumerate(pieces)]


def _seqres_lines(atoms) -> list[str]:
    """SEQRES records: each chain's residues in file order, 13 per line."""
    from biotite.structure import get_residue_starts

    starts = get_residue_starts(atoms)
    chains: dict[str, list[str]] = {}
    for k in starts:
        chains.setdefault(str(atoms.chain_id[k]), []).append(str(atoms.res_name[k]))
    out = []
    for chain, names in chains.items():
        for row, first in enumerate(range(0, len(names), 13)):
            residues = " ".join(f"{n:>3s}" for n in names[first:first + 13])
            out.append(f"SEQRES {row + 1:>3d} {chain[:1] or ' '} {len(names):>4d}  {residues}".ljust(80))
    return out


def _remark_lines(remarks: list[str], width: int = 69) -> list[str]:
    """``REMARK 250`` lines of 80 columns; long remarks are wrapped, words longer than a line split, nothing cut."""
    import textwrap

    out = []
    for remark in remarks:
        pieces = textwrap.wrap(remark, width=width, break_long_words=True, break_on_hyphens=False) or [""]
        out.extend(f"REMARK 250 {piece}" for piece in pieces)
    return out


def _with_ter_records(lines: list[str]) -> list[str]:
    """Insert a TER record after the last ATOM of each chain, renumbering later atoms as the PDB format counts TER.

    Left as they are when the file has CONECT records (they name atoms by serial number).
    """
    if any(line.startswith("CONECT") for line in lines):
        return lines
    out: list[str] = []
    serial = 0
    last_atom: str | None = None  # the previous ATOM line of the chain being written
    for line in lines:
        record = line[:6]
        is_atom = record in ("ATOM  ", "HETATM")
        if last_atom is not None and (record != "ATOM  " or line[21] != last_atom[21]):
            serial += 1  # the chain ended: TER takes the next serial number
            out.append(f"TER   {serial:>5d}      {last_atom[17:20]} {last_atom[21]}{last_atom[22:27]}")
            last_atom = None
        if is_atom:
            serial += 1
            line = f"{line[:6]}{serial % 100000:>5d}{line[11:]}"
            if record == "ATOM  ":
                last_atom = line
        out.append(line)
    if last_atom is not None:
        serial += 1
        out.append(f"TER   {serial:>5d}      {last_atom[17:20]} {last_atom[21]}{last_atom[22:27]}")
    return out


def to_mmcif_string(atoms, name: str = "structure", software: dict[str, str] | None = None) -> str:
    """Write an ``AtomArray`` as mmCIF text, with an optional ``_software`` record."""
    from biotite.structure.io import pdbx

    f = pdbx.CIFFile()
    block = pdbx.CIFBlock()
    f[_cif_name(name)] = block
    pdbx.set_structure(f, atoms)
    if software:
        block["software"] = pdbx.CIFCategory({k: [v] for k, v in software.items()})
    buf = _io.StringIO()
    f.write(buf)
    return buf.getvalue()


def _cif_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-." else "_" for c in name)
    return cleaned or "structure"
