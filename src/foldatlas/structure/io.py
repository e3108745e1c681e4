"""Reading and writing PDB and mmCIF files through biotite.

Imports neither torch nor transformers. Files may be gzipped; the format is
taken from the suffix, else from the content.
"""

from __future__ import annotations

import gzip
import io as _io
from pathlib import Path

import numpy as np

from foldatlas.errors import InvalidFileError

__all__ = ["read_structure", "to_pdb_string", "to_mmcif_string", "ca_atoms", "ca_trace", "select_chains"]


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
    import biotite.structure as struc
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
            atoms = pdb.PDBFile.read(_io.StringIO(text)).get_structure(model=1, extra_fields=["b_factor"])
        else:
            atoms = pdbx.get_structure(pdbx.CIFFile.read(_io.StringIO(text)), model=1, extra_fields=["b_factor"])
    except InvalidFileError:
        raise
    except Exception as e:  # biotite raises many types on malformed files
        raise InvalidFileError(f"{label}: malformed {fmt.upper()} file ({e})".replace("\n", " ")) from e
    atoms = atoms[struc.filter_amino_acids(atoms) & (atoms.element != "H")]
    if atoms.array_length() == 0 or not np.any(atoms.atom_name == "CA"):
        raise InvalidFileError(f"{label}: no protein atoms found")
    return atoms


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
    keys = list(zip(ca.chain_id.tolist(), ca.res_id.tolist(), ca.ins_code.tolist()))
    first = np.array(sorted({k: i for i, k in reversed(list(enumerate(keys)))}.values()), dtype=int)
    return ca[first]


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


def to_pdb_string(atoms, remarks: list[str] | None = None) -> str:
    """Write an ``AtomArray`` as PDB text: REMARK 250 lines (wrapped, never cut), the atoms, TER after each chain.

    Parameters
    ----------
    atoms : biotite.structure.AtomArray
    remarks : list of str, optional
        Free text; a remark longer than a PDB line holds goes on over continuation lines.
    """
    from biotite.structure.io import pdb

    f = pdb.PDBFile()
    f.set_structure(atoms)
    buf = _io.StringIO()
    f.write(buf)
    lines = [line for line in buf.getvalue().splitlines() if line.strip() and line.rstrip() != "END"]
    return "".join(f"{line}\n" for line in _remark_lines(remarks or []) + _with_ter_records(lines) + ["END"])


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
