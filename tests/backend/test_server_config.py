"""Server pieces that need no running server: the committed OpenAPI document, settings, host rules, CLI flags."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from geovec.backend.errors import InputError
from geovec.backend.server.auth import split_host
from geovec.backend.server.settings import Settings, is_loopback

OPENAPI = Path(__file__).resolve().parents[2] / "backend" / "openapi.json"


def _openapi(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "geovec.backend.server.openapi", *args], capture_output=True,
                          text=True, timeout=120)


def test_committed_openapi_is_current() -> None:
    r = _openapi("--check")
    assert r.returncode == 0, r.stderr + "\nrun: python -m geovec.backend.server.openapi --write"


def test_openapi_check_catches_a_stale_file(tmp_path: Path) -> None:
    stale = json.loads(OPENAPI.read_text())
    del stale["paths"]["/v1/embed"]
    (tmp_path / "openapi.json").write_text(json.dumps(stale))
    r = _openapi("--check", "--path", str(tmp_path / "openapi.json"))
    assert r.returncode == 1 and "stale" in r.stderr


def test_openapi_declares_bearer_auth_and_error_bodies() -> None:
    spec = json.loads(OPENAPI.read_text())
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["paths"]["/v1/health"]["get"]["security"] == []
    search = spec["paths"]["/v1/search"]["post"]["responses"]
    for code in ("401", "403", "404", "413", "422"):
        assert search[code]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")


def test_settings_from_env_and_flags(tmp_path: Path) -> None:
    env = {"GEOVEC_PORT": "8123", "GEOVEC_MAX_BODY": "4096", "GEOVEC_AUTO_RESUME": "0",
           "GEOVEC_DATA_DIR": str(tmp_path / "d"), "GEOVEC_TOKEN_FILE": str(tmp_path / "t.json"),
           "GEOVEC_ALLOWED_ROOTS": f"{tmp_path}/a:{tmp_path}/b", "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    s = Settings.from_env(env, port=None, device="cpu")
    assert (s.port, s.max_body, s.auto_resume, s.device) == (8123, 4096, False, "cpu")
    assert s.token_file == tmp_path / "t.json" and s.jobs_file == tmp_path / "d" / "jobs.json"
    assert s.allowed_roots == [tmp_path / "a", tmp_path / "b"]
    assert len(s.token) >= 40 and s.token != Settings.from_env(env).token  # fresh random token each start
    with pytest.raises(InputError, match="GEOVEC_PORT"):
        Settings.from_env({"GEOVEC_PORT": "eighty"})


def test_default_token_file_is_in_the_user_config_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import platformdirs

    s = Settings.from_env({})
    assert s.token_file == platformdirs.user_config_path("geovec") / "server.json"


@pytest.mark.parametrize(("host", "ok"), [("127.0.0.1", True), ("127.8.0.1", True), ("localhost", True),
                                          ("::1", True), ("[::1]", True), ("LOCALHOST", True),
                                          ("0.0.0.0", False), ("evil.example", False), ("localhost.evil", False),
                                          ("192.168.0.2", False), ("", False)])
def test_loopback_names(host: str, ok: bool) -> None:
    assert is_loopback(host) is ok


@pytest.mark.parametrize(("header", "host"), [("127.0.0.1:80", "127.0.0.1"), ("[::1]:9", "::1"), ("a.b", "a.b"),
                                              ("localhost", "localhost"), ("[::1]", "::1")])
def test_split_host(header: str, host: str) -> None:
    assert split_host(header) == host


def test_serve_refuses_a_remote_bind_without_the_flag(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "geovec.backend", "serve", "--host", "0.0.0.0", "--port", "0",
                        "--token-file", str(tmp_path / "t.json")], capture_output=True, text=True, timeout=60,
                       env={"GEOVEC_LOG_DIR": str(tmp_path / "log"), "GEOVEC_DATA_DIR": str(tmp_path / "data"),
                            "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "--allow-remote" in r.stderr and not (tmp_path / "t.json").exists()


def test_accepted_connections_have_nagle_off() -> None:
    """Without TCP_NODELAY every small response waits ~40 ms for a delayed ACK (Nagle)."""
    import socket

    from geovec.backend.server.cli import bind

    sock, url = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP  # asyncio only sets TCP_NODELAY on IPPROTO_TCP sockets
        client = socket.create_connection(("127.0.0.1", sock.getsockname()[1]), timeout=5)
        conn, _ = sock.accept()
        with client, conn:
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert url.startswith("http://127.0.0.1:")
    finally:
        sock.close()
