"""A real ``geovec serve`` subprocess on 127.0.0.1 (random port) for the server tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


class ServerProc:
    """Start ``python -m geovec.backend serve --port 0`` with its own token file, data and log dirs.

    ``roots`` become GEOVEC_ALLOWED_ROOTS, so the server (and any fuzzer) can only touch those folders.
    """

    def __init__(self, home: Path, *, model: Path | None, roots: list[Path], extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None, max_file_bytes: int | None = None) -> None:
        self.home = home
        self.token_file = home / "config" / "server.json"
        self.data_dir = home / "data"
        self.log_dir = home / "log"
        self.model = model
        self.roots = roots
        self.extra_args = extra_args or []
        self.extra_env = env or {}
        self.max_file_bytes = max_file_bytes  # RLIMIT_FSIZE: a write past it fails (EFBIG) as on a full disk
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.start_s = 0.0

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def token(self) -> str:
        return str(self.info["token"])

    @property
    def console(self) -> str:
        return (self.home / "console.log").read_text(errors="replace")

    @property
    def log_text(self) -> str:
        path = self.log_dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 120.0) -> ServerProc:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "GEOVEC_LOG_DIR": str(self.log_dir), "GEOVEC_DATA_DIR": str(self.data_dir),
               "GEOVEC_ALLOWED_ROOTS": os.pathsep.join(str(r) for r in self.roots),
               "XDG_CONFIG_HOME": str(self.home / "xdg-config"), "XDG_DATA_HOME": str(self.home / "xdg-data"),
               **self.extra_env}
        args = [sys.executable, "-m", "geovec.backend", "serve", "--port", "0", "--device", "cpu",
                "--token-file", str(self.token_file), *self.extra_args]
        if self.model is not None:
            args += ["--model", str(self.model)]
        t0 = time.monotonic()
        console = open(self.home / "console.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(args, stdout=console, stderr=subprocess.STDOUT, env=env, cwd=self.home,
                                     preexec_fn=self._limits if self.max_file_bytes else None)
        console.close()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"geovec serve exited with {self.proc.returncode}:\n{self.console[-3000:]}")
            try:
                info = json.loads(self.token_file.read_text())
                if info.get("pid") == self.proc.pid:
                    self.info = info
                    if httpx.get(self.url + "/v1/health", timeout=5).status_code == 200:
                        self.start_s = time.monotonic() - t0
                        return self
            except (OSError, ValueError, httpx.HTTPError):
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"geovec serve did not answer /v1/health in {timeout} s:\n{self.console[-3000:]}")

    def _limits(self) -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (self.max_file_bytes, self.max_file_bytes))

    def client(self, token: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token if token is None else token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kw.pop("timeout", 120), **kw)

    def stop(self, timeout: float = 90.0) -> int:
        """SIGTERM and wait (graceful shutdown); returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise
        return int(self.proc.returncode)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (a crash, as far as the server knows)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_job(c: httpx.Client, job_id: str, states: tuple[str, ...] = ("done", "failed", "cancelled", "interrupted"),
             timeout: float = 600.0, seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Poll ``GET /v1/jobs/{id}`` until its state is in ``states``; returns the last progress."""
    deadline = time.monotonic() + timeout
    while True:
        r = c.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if seen is not None:
            seen.append(job)
        if job["state"] in states:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s: {job}")
        time.sleep(0.1)
