"""Raw training data from Debian packages, and the tools that read it.

* ``metastudent-data``: 486,000 UniProt sequences in three BLAST databases
  (one per GO namespace, overlapping), dumped with ``blastdbcmd`` from
  ``ncbi-blast+``;
* ``promod3-data``: ProMod3's StructureDB (21,119 non-redundant PDB chains),
  dumped by :mod:`foldatlas.train.promod3_dump` under Debian's
  ``/usr/bin/python3``, where ``python3-promod3`` lives;
* ``mmseqs2``: clustering and homology search for the split.

Nothing here is run by CI: the tests feed :func:`foldatlas.train.data.build_dataset`
small files of the same formats.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from foldatlas.errors import DataToolError

__all__ = ["DataToolError", "DEBIAN_PACKAGES", "METASTUDENT_DBS", "STRUCTURE_DB", "ensure_debian_packages",
           "dump_uniprot", "dump_structure_db", "read_uniprot_dump", "mmseqs_version", "run_tool",
           "require_extra"]

METASTUDENT_DBS = tuple(f"/usr/share/metastudent-data/dataset_201401/{ns}/goasp.fasta" for ns in ("BPO", "CCO", "MFO"))
STRUCTURE_DB = "/usr/share/promod3/loop_data/structure_db.dat"
DEBIAN_PACKAGES = ("metastudent-data", "ncbi-blast+", "promod3-data", "python3-promod3", "mmseqs2")
_SYSTEM_PYTHON = "/usr/bin/python3"


def _installed(pkg: str) -> bool:
    res = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return res.returncode == 0 and "install ok installed" in res.stdout


def ensure_debian_packages(packages: tuple[str, ...] = DEBIAN_PACKAGES) -> list[str]:
    """Install the Debian packages the extraction reads, if missing.

    Returns
    -------
    list of str
        The packages that were installed now.

    Raises
    ------
    DataToolError
        If this is not a Debian system, or installing needs root and we are not.
    """
    if shutil.which("dpkg-query") is None:
        raise DataToolError("the data extraction needs a Debian system (dpkg and apt-get): "
                            f"packages {', '.join(packages)}")
    missing = [p for p in packages if not _installed(p)]
    if not missing:
        return []
    if os.geteuid() != 0:
        raise DataToolError(f"missing Debian packages: {' '.join(missing)}; install them with: "
                            f"sudo apt-get install -y {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["?"]
            raise DataToolError(f"{' '.join(cmd[:2])} failed: {tail[0]}")
    return missing


def run_tool(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    """Run a command; a missing program or a non-zero exit is a one-line :class:`DataToolError`."""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    except FileNotFoundError as e:
        raise DataToolError(f"{what}: {cmd[0]} not found") from e
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["?"]
        raise DataToolError(f"{what} failed (exit {res.returncode}): {tail[0]}")
    return res


def dump_uniprot(out_dir: Path, dbs: tuple[str, ...] = METASTUDENT_DBS) -> list[Path]:
    """Dump each BLAST database to ``<namespace>.tsv`` (accession, sequence)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for db in dbs:
        out = out_dir / f"uniprot_{Path(db).parent.name}.tsv"
        if not out.exists():
            tmp = out.with_suffix(".tmp")
            with open(tmp, "w") as fh:
                res = subprocess.run(["blastdbcmd", "-db", db, "-entry", "all", "-outfmt", "%t\t%s"],
                                     stdout=fh, stderr=subprocess.PIPE, text=True)
            if res.returncode != 0:
                raise DataToolError(f"blastdbcmd {db} failed: {res.stderr.strip()[:200]}")
            os.replace(tmp, out)
        paths.append(out)
    return paths


def read_uniprot_dump(paths: list[Path]) -> list[tuple[str, str]]:
    """Read ``(accession, sequence)`` pairs from :func:`dump_uniprot` files.

    The title's first word is the accession (the rest are GO terms).
    """
    pairs = []
    for path in paths:
        with open(path) as fh:
            for line in fh:
                title, _, seq = line.rstrip("\n").rpartition("\t")
                if seq:
                    pairs.append((title.split()[0] if title.strip() else f"{path.stem}:{len(pairs)}", seq))
    return pairs


def dump_structure_db(out: Path, db: str = STRUCTURE_DB, limit: int | None = None) -> Path:
    """Dump ProMod3's StructureDB to NPZ with Debian's Python (see :mod:`.promod3_dump`)."""
    if out.exists():
        return out
    if not Path(_SYSTEM_PYTHON).exists():
        raise DataToolError(f"{_SYSTEM_PYTHON} (Debian's Python with python3-promod3) not found")
    script = Path(__file__).with_name("promod3_dump.py")
    cmd = [_SYSTEM_PYTHON, str(script), str(out), "--db", db] + (["--limit", str(limit)] if limit else [])
    # Debian's Python must not see the project's virtual environment.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    run_tool(cmd, "StructureDB dump", env=env)
    return out


def mmseqs_version() -> str:
    """MMseqs2's version string (``DataToolError`` if it is not installed)."""
    if shutil.which("mmseqs") is None:
        raise DataToolError("mmseqs not found: install Debian's mmseqs2 (apt-get install mmseqs2)")
    return run_tool(["mmseqs", "version"], "mmseqs version").stdout.strip()


def python_info() -> str:
    """The interpreter running the build, for the manifest."""
    return sys.version.split()[0]


def require_extra(module: str, package: str):
    """Import ``module`` of the ``train`` extra, or a one-line error saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise DataToolError(f"{package} is needed here: pip install 'foldatlas[train]'") from e
