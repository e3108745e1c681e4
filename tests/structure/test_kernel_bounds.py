"""The compiled kernels (numba, which does not check indices unless asked) never index outside an array on their
own tests' inputs: those tests again, in a child process compiled with numba's bounds checking.

An out-of-range seed once made the refined TM-score kernels read memory that was not the chain's; on most CPUs the
results came out right by chance, on one the suite hung. Bounds checking turns such a read into an IndexError.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
KERNEL_TESTS = ["structure/test_tmrefine.py", "structure/test_pdb_kernels.py", "atlas/test_codec.py"]


@pytest.mark.slow
def test_kernel_tests_pass_with_bounds_checking(tmp_path):
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(str(TESTS / t) for t in KERNEL_TESTS)]
    done = subprocess.run(cmd, cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "error" not in done.stdout.splitlines()[-1]
