"""Protein design: sequences for a backbone (ProteinMPNN), scored and checked by refolding."""

from foldatlas.design.features import Backbone, backbone, parse_positions, tied_groups

__all__ = ["Backbone", "backbone", "parse_positions", "tied_groups"]
