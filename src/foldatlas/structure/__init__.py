"""Structures: PDB/mmCIF I/O, superposition and similarity metrics (no torch)."""

from foldatlas.structure.compare import Comparison, compare_files, compare_structures
from foldatlas.structure.io import ca_trace, read_structure, select_chains, to_mmcif_string, to_pdb_string
from foldatlas.structure.metrics import gdt_ts, kabsch, lddt, superposed_rmsd

__all__ = [
    "Comparison", "ca_trace", "compare_files", "compare_structures", "gdt_ts", "kabsch", "lddt",
    "read_structure", "select_chains", "superposed_rmsd", "to_mmcif_string", "to_pdb_string",
]
