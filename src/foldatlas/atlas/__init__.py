"""The atlas: a store of predicted and imported structures, with bulk build, lookup and search.

Reading an atlas (``open_atlas``, ``Atlas.get``, export, sequence search) imports neither torch nor
transformers; building one loads the folding and language models.
"""

from foldatlas.atlas.entry import AtlasEntry, NewEntry
from foldatlas.atlas.store import Atlas, open_atlas

__all__ = ["Atlas", "AtlasEntry", "NewEntry", "open_atlas", "build_atlas", "BuildOptions", "BuildResult",
           "import_structures", "ImportOptions", "ImportResult", "search_sequences", "SearchOptions", "SequenceHit"]


def __getattr__(name: str):
    if name in ("build_atlas", "BuildOptions", "BuildResult"):
        from foldatlas.atlas import build

        return getattr(build, name)
    if name in ("import_structures", "ImportOptions", "ImportResult"):
        from foldatlas.atlas import importer

        return getattr(importer, name)
    if name in ("search_sequences", "SearchOptions", "SequenceHit"):
        from foldatlas.atlas import seqsearch

        return getattr(seqsearch, name)
    raise AttributeError(name)
