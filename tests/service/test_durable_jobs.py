"""Fold jobs kept in the atlas: resumed after a restart (a ``kill -9`` included), answered after it, pruned."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from foldatlas.atlas import open_atlas
from foldatlas.atlas.codec import sequence_md5
from foldatlas.errors import AtlasError, ServiceBusyError, UnknownEntryError
from foldatlas.seq.records import make_record
from foldatlas.service.jobs import MAX_ATTEMPTS, FoldService

AA = "ACDEFGHIKLMNPQRSTVWY"


class HeldExecutor:
    """Stands in for the fold executor: keeps the submitted folds until the test runs them, one by one."""

    def __init__(self) -> None:
        self.calls: list = []

    def submit(self, fn, *args) -> None:
        self.calls.append((fn, args))

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        self.calls.clear()

    def run_all(self) -> None:
        while self.calls:
            fn, args = self.calls.pop(0)
            fn(*args)


def _service(folder, model, held: HeldExecutor | None = None, **kwargs) -> FoldService:
    kwargs.setdefault("queue_size", 4)
    service = FoldService(open_atlas(folder, create=True), model, None, max_length=400, **kwargs)
    if held is not None:
        service._executor.shutdown()
        service._executor = held
    return service


@pytest.fixture
def folded(monkeypatch):
    """The sequences folded (one list entry per record), counted at the engine."""
    import foldatlas.predict.engine as engine

    real, seen = engine.fold_batch, []

    def counting(model, records, options):
        seen.extend(r.sequence for r in records)
        return real(model, records, options)

    monkeypatch.setattr(engine, "fold_batch", counting)
    return seen


def test_queued_and_interrupted_jobs_resume_after_a_restart(tmp_path, tiny_model, folded):
    folder = tmp_path / "atlas"
    held = HeldExecutor()
    first = _service(folder, tiny_model, held)
    a = first.submit(make_record("a", "MKTAYIAKQRQISFVKSHF"))
    b = first.submit(make_record("b", "GAVLIKKUWHOB", description="b with rare letters"))
    c = first.submit(make_record("c", "WWHHMKTAY"))
    fn, args = held.calls.pop()  # c folds, and the server dies before its job is saved as done
    fn(*args)
    assert c.status == "done" and first.atlas.get(c.checksum).sequence == "WWHHMKTAY"
    first.atlas.update_job(c.id, status="running", entry_id=None, finished=0.0)
    first.atlas.update_job(a.id, status="running", started=time.time())  # a was folding
    dup = {**first.atlas.get_job(a.id), "id": "0" * 32, "status": "queued", "started": 0.0}
    first.atlas.put_job(dup)  # the same sequence twice (say, from two servers)
    first.atlas.close()  # the crash: nothing more is written
    with open_atlas(folder) as atlas:
        assert {j["id"] for j in atlas.unfinished_jobs()} == {a.id, b.id, c.id, dup["id"]}
    folded.clear()

    held = HeldExecutor()
    second = _service(folder, tiny_model, held, queue_size=0)  # room for 1: resumed jobs go beyond it
    assert second.resume() == 4 and second.resume() == 0
    assert second.pending == 3 and second.job(a.id).status == "queued"
    done_c = second.job(c.id)
    assert done_c.status == "done" and done_c.entry_id == c.checksum and done_c.done.is_set()
    assert second.submit(make_record("again", "GAVLIKKUWHOB")).id == b.id  # joins the resumed job
    with pytest.raises(ServiceBusyError):
        second.submit(make_record("new", "MKTAYW"))
    held.run_all()
    assert sorted(folded) == sorted([a.sequence, b.sequence])  # c and the duplicate not folded again
    for job_id, checksum in ((a.id, a.checksum), (b.id, b.checksum), (dup["id"], a.checksum)):
        job = second.job(job_id)
        assert job.status == "done" and job.entry_id == checksum and job.error is None and job.done.is_set()
    assert second.pending == 0 and second.atlas.unfinished_jobs() == []
    entry = second.atlas.get(b.checksum)
    assert entry.sequence == b.sequence == "GAVLIKKCWHKX" and entry.description == "b"
    assert entry.provenance["substitutions"] == [list(s) for s in make_record("b", "GAVLIKKUWHOB").substitutions]
    stored = second.atlas.get_job(b.id)
    assert stored["description"] == "b with rare letters" and stored["substitutions"] == list(b.substitutions)
    assert stored["finished"] >= stored["started"] > stored["submitted"] > 0 and stored["attempts"] == 1
    second.close()
    second.atlas.close()


def test_a_job_servers_died_folding_too_often_fails_instead_of_folding_again(tmp_path, tiny_model, folded):
    folder = tmp_path / "atlas"
    with open_atlas(folder, create=True) as atlas:
        for job_id, seq, attempts in (("poison", "MKTAYIAKQ", MAX_ATTEMPTS), ("unlucky", "GAVLIKKW", 1)):
            atlas.put_job({"id": job_id, "name": job_id, "sequence": seq, "checksum": sequence_md5(seq),
                           "status": "running", "attempts": attempts, "submitted": 1.0, "started": 2.0})
    held = HeldExecutor()
    service = _service(folder, tiny_model, held)
    assert service.resume() == 2
    held.run_all()
    poison, unlucky = service.job("poison"), service.job("unlucky")
    assert poison.status == "failed" and f"each of {MAX_ATTEMPTS} folds" in poison.error and poison.done.is_set()
    assert unlucky.status == "done" and unlucky.attempts == 2 and folded == ["GAVLIKKW"]
    assert service.atlas.get_job("poison")["status"] == "failed" and service.atlas.unfinished_jobs() == []
    service.close()
    service.atlas.close()


def test_finished_job_ids_answer_after_a_restart(tmp_path, tiny_model, monkeypatch):
    import foldatlas.predict.engine as engine

    real = engine.fold_batch

    def picky(model, records, options):
        if records[0].sequence == "WWWW":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(model, records, options)

    monkeypatch.setattr(engine, "fold_batch", picky)
    folder = tmp_path / "atlas"
    first = _service(folder, tiny_model)
    good, bad = first.submit(make_record("good", "MKTAYIAKQ")), first.submit(make_record("bad", "WWWW"))
    assert good.done.wait(60) and bad.done.wait(60)
    cached = first.submit(make_record("cached", "MKTAYIAKQ"))
    assert cached.cached and cached.id != good.id
    first.close()
    first.atlas.close()

    second = _service(folder, tiny_model)
    assert second.resume() == 0
    for before in (good, bad, cached):
        after = second.job(before.id)
        assert after.to_dict() == before.to_dict() and after.done.is_set()
    assert second.job(good.id).entry_id == good.checksum and second.job(bad.id).error == "out of memory"
    with pytest.raises(UnknownEntryError):
        second.job("f" * 32)
    second.close()
    second.atlas.close()


def test_pruning_drops_the_oldest_finished_jobs_only(tmp_path, tiny_model):
    with open_atlas(tmp_path / "rows", create=True) as atlas:
        states = ["done", "queued", "failed", "running", "done"]
        for k, status in enumerate(states):
            atlas.put_job({"id": f"j{k}", "name": f"n{k}", "sequence": "MKT", "checksum": "c", "status": status})
        assert atlas.prune_jobs(3) == 2  # j0 and j2, the oldest finished
        assert [atlas.get_job(f"j{k}") is None for k in range(5)] == [True, False, True, False, False]
        assert atlas.prune_jobs(0) == 1 and [j["id"] for j in atlas.unfinished_jobs()] == ["j1", "j3"]
        with pytest.raises(AtlasError, match="status 'lost'"):
            atlas.put_job({"id": "x", "name": "x", "sequence": "M", "checksum": "c", "status": "lost"})
        with pytest.raises(AtlasError, match="no fold job"):
            atlas.update_job("nope", status="done")
        with pytest.raises(AtlasError, match="unknown fold-job columns"):
            atlas.update_job("j1", owner="me")
        with pytest.raises(AtlasError, match="cannot store"):
            atlas.put_job({"id": "j1", "name": "again", "sequence": "M", "checksum": "c", "status": "queued"})

    held = HeldExecutor()
    service = _service(tmp_path / "atlas", tiny_model, held, jobs_kept=2)
    service.submit(make_record("first", "MKTAYIAKQ"))
    held.run_all()
    waiting = service.submit(make_record("waiting", "GAVLIKK"))
    answered = [service.submit(make_record(f"again{k}", "MKTAYIAKQ")) for k in range(3)]
    assert all(j.cached for j in answered)
    rows = [service.atlas.get_job(j.id) for j in (waiting, *answered)]
    assert [r is not None for r in rows] == [True, False, False, True]  # 2 kept: the queued one and the newest
    with pytest.raises(UnknownEntryError):
        service.job(answered[0].id)
    service.close()
    service.atlas.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(folder, checkpoint, log_path) -> tuple[subprocess.Popen, str]:
    """``foldatlas serve`` in a subprocess, as users run it; returns it and its base URL once it answers.

    One torch thread: on a small shared machine, more threads than free cores make folds many times slower.
    """
    import httpx

    port = _free_port()
    log = open(log_path, "a")
    proc = subprocess.Popen([sys.executable, "-m", "foldatlas.cli.main", "serve", "--atlas", str(folder),
                             "--model", str(checkpoint), "--port", str(port), "--embedding-model", "none",
                             "--fold-workers", "1", "--threads", "1", "--max-length", "1000", "--log-level", "warning"],
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/api/v1/jobs/none", timeout=2)  # any answer: the server is up
            return proc, url
        except httpx.TransportError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the server did not start:\n{log_path.read_text()[-3000:]}")


@pytest.mark.slow
def test_jobs_survive_kill_9_of_the_server(tmp_path, tiny_checkpoint):
    """Submit folds, SIGKILL the server while some wait, restart it: every job answers and ends done."""
    import httpx

    folder, log_path = tmp_path / "atlas", tmp_path / "serve.log"
    rng = np.random.default_rng(3)
    sequences = ["".join(rng.choice(list(AA), int(n))) for n in rng.integers(60, 100, 6)]
    proc, url = _serve(folder, tiny_checkpoint, log_path)
    try:
        jobs = []
        for k, seq in enumerate(sequences):
            answer = httpx.post(f"{url}/api/v1/fold", json={"sequence": f">job{k}\n{seq}"}, timeout=30)
            assert answer.status_code == 202, answer.text
            jobs.append(answer.json())
    finally:
        proc.kill()  # SIGKILL: no shutdown code runs
        proc.wait(30)
    with open_atlas(folder) as atlas:  # what the killed server left
        assert len(atlas.unfinished_jobs()) >= 2 and len(atlas) < len(sequences)

    proc, url = _serve(folder, tiny_checkpoint, log_path)
    try:
        for job in jobs:  # every ID answers at once
            answer = httpx.get(f"{url}/api/v1/jobs/{job['job_id']}", timeout=30)
            assert answer.status_code in (200, 202) and answer.json()["checksum"] == job["checksum"], answer.text
        deadline = time.monotonic() + 180
        states = {}
        while time.monotonic() < deadline:
            states = {j["job_id"]: httpx.get(f"{url}/api/v1/jobs/{j['job_id']}", timeout=30).json() for j in jobs}
            if all(s["status"] in ("done", "failed") for s in states.values()):
                break
            time.sleep(0.3)
        for job, seq in zip(jobs, sequences):
            state = states[job["job_id"]]
            assert state["status"] == "done" and state["entry_id"] == job["checksum"], state
            entry = httpx.get(f"{url}{state['links']['entry']}", timeout=30).json()
            assert entry["sequence"] == seq and entry["description"] == job["name"]
    finally:
        proc.terminate()
        proc.wait(60)
    with open_atlas(folder) as atlas:
        assert len(atlas) == len(sequences) and atlas.unfinished_jobs() == []
