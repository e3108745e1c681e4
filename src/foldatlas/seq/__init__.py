"""Sequences: alphabet, FASTA parsing and validation, complexes."""

from foldatlas.seq.fasta import parse_fasta, read_fasta, read_inputs
from foldatlas.seq.records import Record, clean_sequence, make_record, safe_names

__all__ = ["Record", "clean_sequence", "make_record", "parse_fasta", "read_fasta", "read_inputs", "safe_names"]
