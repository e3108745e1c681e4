"""FASTA reading with errors that name the file, the record and the line.

Hand-written rather than biotite's ``FastaFile`` because validation must point
at the record and position of a bad residue and reject non-FASTA input with a
one-line reason; the format itself is a few lines of code.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from foldatlas.errors import InvalidFileError, InvalidSequenceError
from foldatlas.files import is_existing_file, path_exists
from foldatlas.seq.records import Record, clean_sequence, make_record

__all__ = ["parse_fasta", "read_fasta", "read_inputs", "fasta_header"]


def parse_fasta(text: str, source: str = "<input>") -> list[Record]:
    """Parse FASTA text into validated records.

    Parameters
    ----------
    text : str
        FASTA content. Sequences may span lines; ``:`` separates the chains of a
        complex; ``;`` comment lines are ignored.
    source : str
        Where the text came from, for error messages.

    Returns
    -------
    list of Record

    Raises
    ------
    InvalidFileError
        If the text is empty, does not start with a ``>`` header, or a record has
        no sequence.
    InvalidSequenceError
        If a sequence holds an invalid residue.
    """
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise InvalidFileError(f"{source}: empty file, expected FASTA records ('>name' then a sequence)")
    records: list[Record] = []
    header: str | None = None
    chunks: list[str] = []

    def flush() -> None:
        if header is None:
            return
        name = header.split()[0] if header.split() else ""
        _refuse_non_protein(name, source)
        if not "".join(chunks).strip():
            raise InvalidFileError(f"{source}: record '{name or header}' has no sequence")
        chains, subs = clean_sequence("".join(chunks), record=name or f"#{len(records) + 1}")
        records.append(Record(name=name, chains=chains, description=header, substitutions=subs))

    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(";"):
            continue
        if stripped.startswith(">"):
            flush()
            header, chunks = stripped[1:].strip(), []
        elif header is None:
            raise InvalidFileError(
                f"{source}: not FASTA: line {number} comes before any '>' header"
            )
        else:
            chunks.append(stripped)
    flush()
    return records


# Molecule types a header may declare in the Boltz / AlphaFold 3-style "name|type" notation.
_NON_PROTEIN = {"dna", "rna", "smiles", "ccd", "ligand"}


def _refuse_non_protein(name: str, source: str) -> None:
    """Refuse a record whose header declares a nucleic acid or a ligand (``>A|dna``, ``>L|smiles``, ...)."""
    kinds = sorted({field.lower() for field in name.split("|")[1:]} & _NON_PROTEIN)
    if kinds:
        kind = kinds[0].upper() if kinds[0] in ("dna", "rna") else kinds[0]
        raise InvalidSequenceError(f"{source}: record '{name}' declares a non-protein chain ({kind}); foldatlas "
                                   f"folds protein chains only (nucleic acids and ligands are not supported)")


def read_fasta(path: str | Path) -> list[Record]:
    """Read a FASTA file (optionally gzipped) into validated records.

    Raises
    ------
    InvalidFileError
        If the file is missing, unreadable, binary or not FASTA.
    """
    path = Path(path)
    if not is_existing_file(path):
        raise InvalidFileError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
        raise InvalidFileError(f"{path}: cannot read as FASTA text ({e.__class__.__name__})") from e
    return parse_fasta(text, source=str(path))


def read_inputs(inputs: list[str], default_name: str = "query") -> list[Record]:
    """Read each input as a FASTA file if it names one, else as a raw sequence (of any length).

    Parameters
    ----------
    inputs : list of str
        File paths or raw sequences (``:`` between chains).
    default_name : str
        Name of a raw sequence; numbered when several are given.

    Raises
    ------
    InvalidFileError
        If an input looks like a path (has a ``/`` or a FASTA suffix) but no such
        file exists, or if no input holds a record.
    """
    records: list[Record] = []
    raw_count = sum(1 for item in inputs if not _is_file_like(item))
    raw_index = 0
    for item in inputs:
        if is_existing_file(item):
            records.extend(read_fasta(item))
        elif _is_file_like(item):
            raise InvalidFileError(f"{item}: no such file")
        else:
            raw_index += 1
            name = default_name if raw_count == 1 else f"{default_name}_{raw_index}"
            try:
                records.append(make_record(name, item))
            except InvalidSequenceError as e:
                raise InvalidSequenceError(f"{e} (not a file either)") from e
    if not records:
        raise InvalidFileError("no input records")
    return records


def fasta_header(name: str, description: str = "") -> str:
    """A FASTA header line naming ``name`` once: ``>name description``.

    A description that starts with the name (a FASTA header kept whole, as builds store it) is used as it is.

    Examples
    --------
    >>> fasta_header("P1", "P1 lysozyme"), fasta_header("P1", "lysozyme"), fasta_header("P1", "P1")
    ('>P1 lysozyme', '>P1 lysozyme', '>P1')
    """
    words = " ".join(description.split())
    if not words or words == name:
        return f">{name}"
    return f">{words}" if words.split()[0] == name else f">{name} {words}"


def _is_file_like(item: str) -> bool:
    lowered = item.lower()
    return "/" in item or "\\" in item or lowered.endswith(
        (".fa", ".fasta", ".faa", ".fas", ".fa.gz", ".fasta.gz", ".txt")
    ) or path_exists(item)
