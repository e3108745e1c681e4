"""Scale-out: the atlas build on a distributed engine (Ray). Nothing here is imported without ``--ray``."""
