"""Write the random-weight ESMFold checkpoint the fold benchmark runs on.

``full``: the ESMFold v1 architecture (3.5 B parameters, 48 trunk blocks, the
language model stored in float16 as in the released weights), 8.4 GB on disk:
the same cost as the real model; ``mid``: ESM-2 650M-shaped language model and 8 trunk blocks.
Usage: ``python make_checkpoint.py DIR [full|mid|tiny]``.
"""

import sys

from foldatlas.models.random_checkpoint import write_random_esmfold

if __name__ == "__main__":
    print(write_random_esmfold(sys.argv[1], size=sys.argv[2] if len(sys.argv) > 2 else "full"))
