"""Find, start and stop the ``geovec serve`` process; hand out the live connection.

Everything here is asynchronous: :meth:`BackendManager.ensure` returns at once and
later emits ``ready(Connection)`` or ``failed(message, hint)`` on the UI thread.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QObject, QTimer, pyqtSignal

from .client import BackendError, default_token_file, get_json_async, read_token_file
from .params import Connection
from .settings import Setting

log = logging.getLogger(__name__)
PLUGIN_DIR = Path(__file__).resolve().parents[1]
_current: Connection | None = None


#: backends this QGIS started (dock or Processing); stopped on unload, else they stop with QGIS
_started: list[subprocess.Popen] = []
_start_lock = threading.Lock()
LOST_AFTER_MISSES = 2  # heartbeats without an answer before a backend not started here counts as lost


def token_path() -> Path:
    """The one token file per user: the setting, else where ``geovec serve`` writes it by default."""
    return Path(Setting.TOKEN_FILE.get() or default_token_file())


def current_connection() -> Connection | None:
    """The connection of the running plugin's backend, else the one in the token file."""
    if _current is not None:
        return _current
    url = Setting.BACKEND_URL.get()
    data = read_token_file(token_path()) or {}
    url = url or data.get("url", "")
    return Connection(url, data.get("token", "")) if url else None


def private_dir(path: Path) -> Path:
    """``path`` created (with parents) and set to mode 0700: only this user can read logs in it."""
    path.mkdir(parents=True, exist_ok=True)
    if sys.platform != "win32":
        os.chmod(path, 0o700)
    return path


def data_dir() -> Path:
    """The plugin's own folder in the QGIS profile (logs, managed env), mode 0700."""
    return private_dir(Path(QgsApplication.qgisSettingsDirPath()) / "geovec")


def backend_log_path() -> Path:
    return data_dir() / "backend.log"


def open_private_log(path: Path, mode: str = "ab"):  # noqa: ANN201 - a binary or text file object
    """Open a log file for appending, created 0600 (an existing one is made 0600): logs name the user's files."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except (OSError, AttributeError):  # Windows: no POSIX modes
        pass
    return os.fdopen(fd, mode) if "b" in mode else os.fdopen(fd, mode, encoding="utf-8")


def managed_env_dir() -> Path:
    """Where "Set up backend" creates the backend environment."""
    return Path(Setting.MANAGED_ENV.get() or data_dir() / "env")


def _env_command(env: Path) -> list[str] | None:
    for rel in ("bin/geovec", "Scripts/geovec.exe"):
        if (env / rel).is_file():
            return [str(env / rel)]
    return None


def command_from_setting(value: str) -> list[str] | None:
    """A configured backend: an environment folder, a ``geovec`` executable or a python."""
    path = Path(value).expanduser()
    if path.is_dir():
        return _env_command(path)
    if not path.is_file():
        return None
    if path.name.lower().startswith("python"):
        return [str(path), "-m", "geovec.backend"]
    return [str(path)]


def find_command() -> tuple[list[str] | None, list[str]]:
    """The ``geovec`` command to run and the places looked at (for the error message)."""
    tried: list[str] = []
    configured = Setting.BACKEND_COMMAND.get()
    if configured:
        tried.append(f"configured backend {configured}")
        return command_from_setting(configured), tried
    candidates = [("managed environment", managed_env_dir())]
    for what, env in candidates:
        tried.append(f"{what} {env}")
        cmd = _env_command(env)
        if cmd:
            return cmd, tried
    tried.append("`geovec` on PATH")
    found = shutil.which("geovec")
    if found:
        return [found], tried
    tried.append(f"plugin environment {PLUGIN_DIR / '.venv'}")
    return _env_command(PLUGIN_DIR / ".venv"), tried


def serve_args(cmd: list[str], token_file: Path) -> list[str]:
    """``geovec serve`` on a random loopback port, tied to this QGIS process by ``--parent-pid``."""
    args = cmd + ["serve", "--host", "127.0.0.1", "--port", "0", "--token-file", str(token_file),
                  "--parent-pid", str(os.getpid())]
    device = Setting.DEVICE.get()
    if device:
        args += ["--device", device]
    return args


def spawn(args: list[str], log_path: Path) -> subprocess.Popen:
    """Start the backend detached from the terminal, output appended to a 0600 log; raises OSError."""
    with open_private_log(log_path) as logf:
        kwargs = {"start_new_session": True} if sys.platform != "win32" else {"creationflags": 0x08000000}
        proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env(), **kwargs)
    _started.append(proc)
    log.info("started GeoVec backend pid %s: %s", proc.pid, " ".join(args))
    return proc


def stop_process(proc: subprocess.Popen) -> None:
    """Ask ``proc`` to stop (SIGTERM: a graceful shutdown) without waiting; a daemon thread reaps it."""
    if proc in _started:
        _started.remove(proc)
    if proc.poll() is not None:
        return
    proc.terminate()

    def reap() -> None:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.info("GeoVec backend pid %s stopped", proc.pid)

    threading.Thread(target=reap, name="geovec-reap", daemon=True).start()


def stop_started() -> None:
    """Stop every backend this QGIS started (on unload); never blocks."""
    for proc in list(_started):
        stop_process(proc)


def child_env() -> dict[str, str]:
    """QGIS's environment minus what would make another Python pick up QGIS's libraries.

    The allowed-folders setting becomes GEOVEC_ALLOWED_ROOTS: the backend then refuses any path
    (symlinks and VRT sources resolved) outside those folders.
    """
    env = dict(os.environ)
    for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "QGIS_PREFIX_PATH"):
        env.pop(key, None)
    roots = Setting.ALLOWED_ROOTS.get().strip()
    if roots:
        env["GEOVEC_ALLOWED_ROOTS"] = roots
    return env


class BackendManager(QObject):
    """Connects to a running backend, or starts one and waits for ``/health`` without blocking."""

    ready = pyqtSignal(object)  # Connection
    failed = pyqtSignal(str, str)  # message, hint
    lost = pyqtSignal(str)  # the backend stopped answering

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.connection: Connection | None = None
        self.health: dict | None = None
        self.process: subprocess.Popen | None = None
        self.log_path = backend_log_path()
        self.token_path = token_path()
        self._busy = False
        self._deadline = 0.0
        self._poll = QTimer(self)
        self._poll.setInterval(250)
        self._poll.timeout.connect(self._check_started)
        self._heartbeat = QTimer(self)
        self._heartbeat.setInterval(5000)
        self._heartbeat.timeout.connect(self.refresh_health)
        self._pending = None
        self._beat = None
        self._misses = 0

    @property
    def owned(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ensure(self) -> None:
        """Emit ``ready`` once a backend answers ``/health``; start one if allowed and needed."""
        if self._busy:
            return
        self._busy = True
        conn = self.connection if self.owned else current_connection()
        if conn is None:
            self._start()
            return
        self._pending = get_json_async(conn, "/v1/health", lambda d, e: self._on_probe(conn, d, e))

    def _on_probe(self, conn: Connection, data, error: BackendError | None) -> None:
        self._pending = None
        if error is None and isinstance(data, dict):
            self._succeed(conn, data)
        elif Setting.BACKEND_URL.get() and not Setting.AUTO_START.get():
            self._fail(error.message if error else "The backend did not answer",
                       "check the backend URL in GeoVec > Settings")
        else:
            self._start()

    def _start(self) -> None:
        if not Setting.AUTO_START.get():
            self._fail("No GeoVec backend is running",
                       "turn on 'Start the backend when none answers' in GeoVec > Settings")
            return
        cmd, tried = find_command()
        if not cmd:
            self._fail(
                "No GeoVec backend found (looked at: " + "; ".join(tried) + ")",
                "install one with GeoVec > Set up backend, or choose its folder in GeoVec > Settings",
            )
            return
        self.token_path = token_path()
        args = serve_args(cmd, self.token_path)
        try:
            self.process = spawn(args, self.log_path)
        except OSError as e:
            self._fail(f"Could not start the GeoVec backend ({' '.join(args)}): {e}",
                       "check the backend command in GeoVec > Settings, or run GeoVec > Set up backend")
            return
        self._deadline = time.monotonic() + float(Setting.START_TIMEOUT_S.get())
        self._poll.start()

    def _log_tail(self, n: int = 1200) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-n:].strip()
        except OSError:
            return ""

    def _check_started(self) -> None:
        if self._pending is not None or self.process is None:
            return
        code = self.process.poll()
        if code is not None:
            self._poll.stop()
            self.process = None
            self._fail(f"The GeoVec backend exited at start (code {code}): {self._log_tail(600)}",
                       f"see the full log in {self.log_path}")
            return
        if time.monotonic() > self._deadline:
            self._poll.stop()
            self.stop()
            self._fail("The GeoVec backend did not answer /health in time",
                       f"see {self.log_path}; raise the start timeout in GeoVec > Settings")
            return
        data = read_token_file(self.token_path)
        if not data or int(data.get("pid") or -1) != self.process.pid:
            return
        conn = Connection(data["url"], data.get("token", ""))
        self._pending = get_json_async(conn, "/v1/health", lambda d, e: self._on_started(conn, d, e))

    def _on_started(self, conn: Connection, data, error: BackendError | None) -> None:
        self._pending = None
        if error is None and isinstance(data, dict) and self._poll.isActive():
            self._poll.stop()
            self._succeed(conn, data)

    def _succeed(self, conn: Connection, health: dict) -> None:
        global _current
        self._busy = False
        self.connection, self.health = conn, health
        _current = conn
        self._misses = 0
        self._heartbeat.start(1000 if health.get("model_state") == "loading" else 5000)
        self.ready.emit(conn)

    def _fail(self, message: str, hint: str) -> None:
        self._busy = False
        self.failed.emit(message, hint)

    def refresh_health(self) -> None:
        """Fetch ``/health`` again (the heartbeat); ``ready`` again when it changed, ``lost`` when gone."""
        if self.connection is not None and self._beat is None:
            conn = self.connection
            self._beat = get_json_async(conn, "/v1/health", lambda d, e: self._on_refresh(conn, d, e))

    def _on_refresh(self, conn: Connection, data, error) -> None:
        global _current
        self._beat = None
        if conn != self.connection:
            return
        if error is None and isinstance(data, dict):
            self._misses = 0
            changed = data != self.health
            self.health = data
            # while the model loads, follow it every second (the dock shows the step); else every 5 s
            self._heartbeat.setInterval(1000 if data.get("model_state") == "loading" else 5000)
            if changed:
                self.ready.emit(conn)
        elif error is not None and error.code == "unreachable":
            self._misses += 1
            died = self.process is not None and self.process.poll() is not None
            if not died and self._misses < LOST_AFTER_MISSES:  # a busy backend may miss one beat
                return
            self._heartbeat.stop()
            self.connection = None
            if _current == conn:
                _current = None
            self.lost.emit(f"Lost the GeoVec backend at {conn.base}")

    def stop(self) -> None:
        """Forget the connection; stop the backend if this plugin started it (without waiting)."""
        global _current
        self._poll.stop()
        self._heartbeat.stop()
        self._busy = False
        for pending in (self._pending, self._beat):
            if pending is not None:
                pending.cancel()
        self._pending = self._beat = None
        if _current is self.connection:
            _current = None
        proc, self.process = self.process, None
        if proc is not None:
            stop_process(proc)
            self.connection = None
