"""Service settings from the environment, the memory-based length limit, and ``foldatlas serve``'s errors."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from foldatlas.cli.main import main
from foldatlas.errors import InvalidOptionError
from foldatlas.service import ServiceSettings, memory_max_length


def test_settings_from_environment_and_overrides(tmp_path):
    env = {"FOLDATLAS_MAX_LENGTH": "900", "FOLDATLAS_ATLAS": str(tmp_path), "FOLDATLAS_FOLD_TIMEOUT": "2.5",
           "FOLDATLAS_MODEL": "some/model", "FOLDATLAS_QUEUE_SIZE": ""}
    s = ServiceSettings.from_env(env)
    assert s.max_length == 900 and s.atlas == Path(tmp_path) and s.fold_timeout == 2.5 and s.model == "some/model"
    assert s.queue_size == 16  # empty: the default
    assert ServiceSettings.from_env(env, max_length=50, model=None).max_length == 50
    with pytest.raises(InvalidOptionError, match="FOLDATLAS_MAX_LENGTH='many'"):
        ServiceSettings.from_env({"FOLDATLAS_MAX_LENGTH": "many"})
    with pytest.raises(InvalidOptionError):
        ServiceSettings(fold_workers=0)


def test_memory_limit_grows_with_memory():
    small, large = memory_max_length(2 * 2**30), memory_max_length(64 * 2**30)
    assert 100 < small < large <= 8192
    from foldatlas.predict.memory import auto_chunk_size, estimate_peak_bytes

    have = 2 * 2**30
    assert estimate_peak_bytes(small, chunk_size=auto_chunk_size(small, available=have)) <= 0.8 * have
    assert estimate_peak_bytes(small + 1, chunk_size=auto_chunk_size(small + 1, available=have)) > 0.8 * have


def test_serve_rejects_bad_settings_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("FOLDATLAS_QUEUE_SIZE", "lots")
    assert main(["serve", "--port", "8765"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: FOLDATLAS_QUEUE_SIZE='lots' is not a valid int"]


@pytest.mark.slow
def test_serve_command_serves_the_embedded_model(tmp_path):
    """`foldatlas serve` as users run it: the embedded model, a new atlas, a fold over HTTP."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "foldatlas.cli.main", "serve", "--atlas", str(tmp_path / "a"),
                             "--port", str(port), "--log-level", "warning"], stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            try:
                info = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/info", timeout=1).read()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.2)
        assert b"foldatlas-fold" in info or b"max_length" in info
        req = urllib.request.Request(f"http://127.0.0.1:{port}/foldSequence/v1/pdb/", data=b"MKTAYIAKQRQISFVKSHF",
                                     method="POST")
        pdb = urllib.request.urlopen(req, timeout=300).read().decode()
        assert pdb.count(" CA ") == 19 and "END" in pdb
    finally:
        proc.terminate()
        proc.wait(60)
    assert (tmp_path / "a" / "atlas.sqlite").is_file()
