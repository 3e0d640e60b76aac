"""A job's whole life on the real rasters in ../shared/data, through a real ``geovec serve``.

Clean run (progress rising to done) with 20 concurrent searches while it writes;
cancel midway then resume; SIGKILL the server midway, restart (reported
``interrupted``), resume; SIGTERM midway (graceful: exit 0, index consistent),
auto-resume at the next start. Every interrupted index ends with exactly the
clean run's tile count.
"""

from __future__ import annotations

import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.backend.serverproc import ServerProc, wait_job

pytestmark = pytest.mark.slow
TILING = {"tile_size": 32, "overlap": 0.25}
BATCH = 4


def _body(shared: Path, index: Path) -> dict:
    return {"folder": str(shared), "index": str(index), "tiling": TILING, "batch_size": BATCH}


def _wait_running(c: httpx.Client, job_id: str, min_done: int = 1, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/v1/jobs/{job_id}").json()
        if job["state"] == "running" and job["tiles_done"] >= min_done:
            return job
        assert job["state"] in ("queued", "running"), job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not get going")


def _count(index: Path) -> tuple[int, int]:
    """(tiles, distinct tile ids) straight from SQLite, the index's source of truth."""
    with sqlite3.connect(index / "meta.sqlite") as db:
        return db.execute("SELECT COUNT(*), COUNT(DISTINCT tile_id) FROM tiles").fetchone()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, shared_data: Path):
    root = tmp_path_factory.mktemp("server-jobs")
    srv = ServerProc(root / "srv", model=tiny_model_dir, roots=[root, shared_data, tiny_model_dir]).start()
    with srv.client() as c:
        yield {"root": root, "srv": srv, "c": c, "shared": shared_data, "model": tiny_model_dir}
    assert srv.stop() == 0
    assert "failed unexpectedly" not in srv.log_text


@pytest.fixture(scope="module")
def clean(env) -> dict:
    """A clean run, with 20 concurrent searches fired at the same index while the job writes it."""
    c, idx = env["c"], env["root"] / "clean"
    r = c.post("/v1/jobs", json=_body(env["shared"], idx))
    assert r.status_code == 202, r.text
    jid = r.json()["job_id"]
    _wait_running(c, jid, min_done=BATCH)
    search = {"index": str(idx), "text": "forest near water", "k": 5}
    srv = env["srv"]

    def one(i: int) -> tuple[int, str]:
        with srv.client(timeout=120) as cc:
            resp = cc.post("/v1/search", json={**search, "k": 1 + i % 7})
            return resp.status_code, resp.text[:300]

    results, states = [], []
    for _ in range(3):  # three bursts of 20 concurrent searches
        with ThreadPoolExecutor(20) as pool:
            results += list(pool.map(one, range(20)))
        states.append(c.get(f"/v1/jobs/{jid}").json()["state"])
    seen: list[dict] = []
    job = wait_job(c, jid, seen=seen, timeout=900)
    return {"index": idx, "job": job, "seen": seen, "searches": results, "states_during": states}


def test_clean_run_progress_rises_to_done(clean) -> None:
    job = clean["job"]
    assert job["state"] == "done", job
    assert job["tiles_done"] == job["tiles_total"] > 0 and job["summary"]["tiles"] > 0
    running = [s["tiles_done"] for s in clean["seen"] if s["state"] == "running"]
    assert running == sorted(running) and running[-1] <= job["tiles_total"]
    assert any(s["tiles_per_s"] > 0 and s["eta_s"] is not None for s in clean["seen"] if s["state"] == "running")
    assert any(s["current_file"] for s in clean["seen"]), "progress names the current file"
    tiles, distinct = _count(clean["index"])
    assert tiles == distinct == job["summary"]["tiles"]


def test_concurrent_searches_while_the_job_writes(clean, env) -> None:
    statuses = [s for s, _ in clean["searches"]]
    assert len(statuses) == 60
    assert statuses == [200] * 60, [t for s, t in clean["searches"] if s != 200][:3]
    assert clean["states_during"][0] == "running", "the first burst ran while the job was writing"
    assert env["srv"].proc.poll() is None


def test_cancel_midway_then_resume(env, clean) -> None:
    c, idx = env["c"], env["root"] / "cancelled"
    jid = c.post("/v1/jobs", json=_body(env["shared"], idx)).json()["job_id"]
    _wait_running(c, jid, min_done=2 * BATCH)
    assert c.post(f"/v1/jobs/{jid}/cancel").status_code == 200
    job = wait_job(c, jid, timeout=300)
    assert job["state"] == "cancelled" and job["summary"]["cancelled"] is True, job
    partial = c.get("/v1/indexes/info", params={"path": str(idx)}).json()["count"]
    assert 0 < partial < clean["job"]["summary"]["tiles"]
    r = c.post(f"/v1/jobs/{jid}/resume")
    assert r.status_code == 200 and r.json()["state"] in ("queued", "running")
    job = wait_job(c, jid, timeout=900)
    assert job["state"] == "done", job
    assert _count(idx) == _count(clean["index"])


def test_sigkill_restart_resume_and_graceful_shutdown(env, clean, tmp_path: Path) -> None:
    want = _count(clean["index"])
    idx = env["root"] / "killed"
    home = tmp_path / "srv2"
    roots = [env["root"], env["shared"], env["model"], tmp_path]
    srv = ServerProc(home, model=env["model"], roots=roots).start()
    with srv.client() as c:
        jid = c.post("/v1/jobs", json=_body(env["shared"], idx)).json()["job_id"]
        _wait_running(c, jid, min_done=3 * BATCH)
    srv.kill()  # SIGKILL: no shutdown code runs
    saved = json.loads((home / "data" / "jobs.json").read_text())
    assert saved["jobs"][0]["progress"]["state"] == "running"

    # restart without auto-resume: the job is reported interrupted, then resumed on request
    srv = ServerProc(home, model=env["model"], roots=roots, extra_args=["--no-resume"]).start()
    with srv.client() as c:
        job = c.get(f"/v1/jobs/{jid}").json()
        assert job["state"] == "interrupted" and "resumed" in job["message"], job
        assert c.post(f"/v1/jobs/{jid}/resume").status_code == 200
        _wait_running(c, jid, min_done=2 * BATCH)
        t0 = time.monotonic()
        assert srv.stop() == 0  # SIGTERM midway: graceful
        print(f"graceful shutdown with a running job took {time.monotonic() - t0:.1f} s")
    assert "shut down cleanly" in srv.log_text and not srv.token_file.exists()
    saved = json.loads((home / "data" / "jobs.json").read_text())
    assert saved["jobs"][0]["progress"]["state"] == "interrupted"
    tiles, distinct = _count(idx)
    assert tiles == distinct and 0 < tiles < want[0]

    # default start: interrupted jobs resume by themselves
    srv = ServerProc(home, model=env["model"], roots=roots).start()
    with srv.client() as c:
        job = wait_job(c, jid, timeout=900)
        assert job["state"] == "done", job
        info = c.get("/v1/indexes/info", params={"path": str(idx)}).json()
    assert srv.stop() == 0
    assert _count(idx) == want and info["count"] == want[0]
