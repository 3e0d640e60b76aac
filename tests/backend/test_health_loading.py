"""``geovec serve --preload``: /v1/health answers while the model loads and says how far the load is."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.backend.serverproc import ServerProc


def _states(srv: ServerProc, until: tuple[str, ...], timeout: float = 180.0) -> list[dict]:
    """Poll health (with the token, as the plugin does) until model_state is in ``until``; every answer, in order."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        r = httpx.get(srv.url + "/v1/health", timeout=10, headers={"Authorization": f"Bearer {srv.token}"})
        assert r.status_code == 200, r.text
        h = r.json()
        h["_answer_s"] = time.monotonic() - t0
        seen.append(h)
        if h["model_state"] in until:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"model_state never reached {until}: {seen[-3:]}")


def test_health_reports_the_load_then_ready_or_failed(tmp_path: Path, tiny_model_dir: Path) -> None:
    srv = ServerProc(tmp_path / "srv", model=tiny_model_dir, roots=[tmp_path, tiny_model_dir],
                     extra_args=["--preload"]).start()
    try:
        seen = _states(srv, ("ready", "failed"))
        first, last = seen[0], seen[-1]
        assert last["model_state"] == "ready" and last["model_loaded"], last
        assert last["load_step"] == last["load_steps"] == 2 and last["load_seconds"] > 0
        # the server answered before the model was in: the first answer came while it loaded
        assert first["model_state"] == "loading" and not first["model_loaded"], first
        assert first["load_stage"] and 0 <= first["load_step"] <= 2
        loading = [h for h in seen if h["model_state"] == "loading"]
        assert [h["load_step"] for h in loading] == sorted(h["load_step"] for h in loading)
        bare = httpx.get(srv.url + "/v1/health", timeout=10).json()  # without the token: status and version only
        assert set(bare) == {"status", "version"}, bare
        with srv.client() as c:  # the preloaded model answers at once
            r = c.post("/v1/embed", json={"inputs": [{"text": "water"}]})
            assert r.status_code == 200 and len(r.json()["vectors"][0]) == 64
            empty = tmp_path / "not-a-model"  # a folder without a checkpoint: the load fails, health says why
            empty.mkdir()
            r = c.post("/v1/models/load", json={"model": str(empty)})
            assert r.status_code >= 400, r.text
        last = _states(srv, ("failed",), timeout=10)[-1]
        assert not last["model_loaded"] and "not-a-model" in last["load_error"], last
    finally:
        assert srv.stop() == 0
