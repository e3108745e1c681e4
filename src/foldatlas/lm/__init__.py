"""Language-model tools: embeddings, contact maps, masked prediction and zero-shot variant effects.

Every tool takes a masked protein LM loaded by :func:`load_lm` — ESM-2 (the embedded ``foldatlas-lm-small``,
``facebook/esm2_t*``) or ESM C (``biohub/ESMC-*``, ``esmc_300m`` / ``esmc_600m`` / ``esmc_6b``), from the local hub
cache or a folder — through the same code, and batches by a token budget. Contact maps need a contact head
(ESM-2 only).
"""

from foldatlas.lm.contacts import predict_contacts, top_contacts
from foldatlas.lm.embed import Embedding, embed, write_embeddings
from foldatlas.lm.model import LanguageModel, load_lm
from foldatlas.lm.unmask import unmask
from foldatlas.lm.variants import METHODS, Mutation, parse_variants, score_variants, single_scan

__all__ = ["LanguageModel", "load_lm", "embed", "Embedding", "write_embeddings", "predict_contacts",
           "top_contacts", "unmask", "parse_variants", "single_scan", "score_variants", "Mutation", "METHODS"]
