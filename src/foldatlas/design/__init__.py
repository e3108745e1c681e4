"""Protein design: sequences for a backbone (ProteinMPNN), scored and checked by refolding.

>>> from foldatlas.design import DesignOptions, design_sequences   # doctest: +SKIP
>>> result = design_sequences(read_structure("target.pdb"), DesignOptions(num_sequences=4))   # doctest: +SKIP
>>> print(result.to_fasta())   # doctest: +SKIP
"""

from foldatlas.design.features import Backbone, backbone, parse_positions, tied_groups
from foldatlas.design.mpnn import (Design, DesignOptions, DesignResult, SequenceScore, design_sequences,
                                   load_design_model, position_log_probs, score_sequences)
from foldatlas.design.refold import Refolded, refold_designs
from foldatlas.design.variants import align_to_structure, structure_variant_scores

__all__ = ["Backbone", "backbone", "parse_positions", "tied_groups", "Design", "DesignOptions", "DesignResult",
           "SequenceScore", "design_sequences", "load_design_model", "position_log_probs", "score_sequences",
           "Refolded", "refold_designs", "align_to_structure", "structure_variant_scores"]
