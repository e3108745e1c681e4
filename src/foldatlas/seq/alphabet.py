"""The residue alphabet foldatlas folds, and the policy for nonstandard letters.

Policy (documented in the README):

* The 20 standard residues and ``X`` (unknown) are accepted; lower case is
  upper-cased and whitespace is removed.
* ``U`` (selenocysteine) is folded as ``C`` and ``O`` (pyrrolysine) as ``K``,
  their closest standard residues; ``B`` (Asx) and ``Z`` (Glx) are ambiguous and
  are folded as ``X``. Each substitution is recorded in the record's JSON.
* One trailing ``*`` (a stop codon in translated sequences) is dropped.
* Anything else is an error naming the record and the position.
"""

from __future__ import annotations

# Order of restypes in AlphaFold / OpenFold residue_constants (and transformers'
# EsmForProteinFolding): the aatype index of a residue is its position here.
RESTYPES: str = "ARNDCQEGHILKMFPSTWYV"
RESTYPES_WITH_X: str = RESTYPES + "X"
RESTYPE_INDEX: dict[str, int] = {aa: i for i, aa in enumerate(RESTYPES_WITH_X)}

SUBSTITUTIONS: dict[str, str] = {"U": "C", "O": "K", "B": "X", "Z": "X"}

RESTYPE_1TO3: dict[str, str] = {
    "A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS", "Q": "GLN", "E": "GLU",
    "G": "GLY", "H": "HIS", "I": "ILE", "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE",
    "P": "PRO", "S": "SER", "T": "THR", "W": "TRP", "Y": "TYR", "V": "VAL", "X": "UNK",
}  # fmt: skip
RESTYPE_3TO1: dict[str, str] = {v: k for k, v in RESTYPE_1TO3.items()}
# Common modified residues read from experimental files, mapped to their parent.
RESTYPE_3TO1.update({"MSE": "M", "SEC": "C", "PYL": "K", "HYP": "P", "SEP": "S", "TPO": "T",
                     "PTR": "Y", "MLY": "K", "CSO": "C", "KCX": "K"})
