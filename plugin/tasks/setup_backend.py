"""SetupBackendTask: create the managed environment and install the backend into it.

Picks the CUDA or the CPU build of torch from what ``nvidia-smi`` reports. Every
step is logged; a failing step ends the task with the exact command to run by hand.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qgis.PyQt.QtCore import pyqtSignal

from ..backend_manager import PLUGIN_DIR, child_env, open_private_log
from ..client import BackendError
from ..settings import Setting
from .base import GeoVecTask

TORCH_INDEX = {"cuda": "https://download.pytorch.org/whl/cu124", "cpu": "https://download.pytorch.org/whl/cpu"}


@dataclass(frozen=True)
class Step:
    title: str
    args: list[str]

    @property
    def command(self) -> str:
        """The step as one shell command a user can paste into a terminal."""
        if sys.platform == "win32":
            return subprocess.list2cmdline(self.args)
        return " ".join(shlex.quote(a) for a in self.args)


def find_python() -> str | None:
    """A Python able to create a venv: python3 on PATH, or the one QGIS ships (Windows/macOS)."""
    for name in ("python3", "python"):
        found = shutil.which(name)
        if found:
            return found
    for cand in (Path(sys.exec_prefix) / "python3.exe", Path(sys.exec_prefix) / "python.exe",
                 Path(sys.exec_prefix) / "bin" / "python3"):
        if cand.is_file():
            return str(cand)
    return None


def detect_gpu() -> str | None:
    """The first GPU's name from ``nvidia-smi``, or None when there is none."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    name = out.stdout.strip().splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else ""
    return name or None


def env_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def backend_source() -> str:
    """What pip installs: this plugin folder when it carries the backend, else the package name."""
    return str(PLUGIN_DIR) if (PLUGIN_DIR / "pyproject.toml").is_file() else "geovec"


def pinned(names: tuple[str, ...] = ("torch", "torchvision")) -> list[str]:
    """The requirement strings the backend's pyproject.toml pins for ``names`` (bare names without it)."""
    try:
        text = (PLUGIN_DIR / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return list(names)
    out = []
    for name in names:
        m = re.search(rf'^\s*"({re.escape(name)}\s*[<>=!~][^"]*)"', text, re.MULTILINE)
        out.append(m.group(1).replace(" ", "") if m else name)
    return out


def plan(env: Path, python: str, source: str, device: str, wheels: str | None = None) -> list[Step]:
    """The commands that set up the environment, in order.

    ``wheels``: a local folder of wheels to install from, with no index (offline machines).
    """
    py = str(env_python(env))
    pip = [py, "-m", "pip", "install"]
    local = ["--no-index", "--find-links", wheels] if wheels else []
    torch_from = local or ["--index-url", TORCH_INDEX[device]]
    steps = [Step("create the environment", [python, "-m", "venv", str(env)])]
    if not wheels:
        steps.append(Step("upgrade pip", pip + ["--upgrade", "pip"]))
    return steps + [
        Step(f"install torch ({device})", pip + pinned() + torch_from),
        Step("install the GeoVec backend", pip + [source] + local),
        Step("check the backend", [py, "-m", "geovec.backend", "--help"]),
    ]


class SetupBackendTask(GeoVecTask):
    """Run :func:`plan` step by step; ``log_line`` streams the output, ``log_path`` keeps it."""

    log_line = pyqtSignal(str)

    def __init__(self, env: Path, log_path: Path, *, python: str | None = None, source: str | None = None,
                 device: str | None = None, extra_env: dict[str, str] | None = None,
                 on_done: Callable[[GeoVecTask], None] | None = None) -> None:
        super().__init__("GeoVec: set up backend", on_done)
        self.env = Path(env)
        self.log_path = Path(log_path)
        self.python = python
        self.source = source or backend_source()
        self.device = device
        self.extra_env = extra_env or {}
        self.steps: list[Step] = []

    def _log(self, text: str) -> None:
        with open_private_log(self.log_path, "a") as f:
            f.write(text + "\n")
        self.log_line.emit(text)

    def work(self) -> str:
        python = self.python or find_python()
        if not python or not Path(python).exists() and not shutil.which(python):
            raise BackendError(f"No Python found to create the backend environment (tried {python or 'python3 on PATH'})",
                               "install Python 3.10+ and set it in GeoVec > Settings > Python for setup")
        gpu = detect_gpu()
        device = self.device or ("cuda" if gpu else "cpu")
        self._log(f"GPU: {gpu or 'none (nvidia-smi absent or no GPU)'} -> torch build: {device}")
        self.steps = plan(self.env, python, self.source, device, Setting.WHEELS_DIR.get() or None)
        env = child_env()
        env.update(self.extra_env)
        for i, step in enumerate(self.steps):
            if self.isCanceled():
                return "canceled"
            self._log(f"[{i + 1}/{len(self.steps)}] {step.title}: {step.command}")
            self.setProgress(100.0 * i / len(self.steps))
            try:
                proc = subprocess.Popen(step.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=env, stdin=subprocess.DEVNULL)
            except OSError as e:
                raise BackendError(f"Set up backend: could not {step.title}: {e}",
                                   f"run this command in a terminal: {step.command}") from e
            tail: list[str] = []
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip()
                tail = (tail + [line])[-15:]
                self._log(line)
                if self.isCanceled():
                    proc.terminate()
            code = proc.wait()
            if self.isCanceled():
                return "canceled"
            if code != 0:
                raise BackendError(
                    f"Set up backend: could not {step.title} (exit {code}): " + " | ".join(tail[-3:]),
                    f"run this command in a terminal and fix what it reports: {step.command} (log: {self.log_path})",
                )
        self.setProgress(100.0)
        self._log(f"backend ready in {self.env}")
        return str(self.env)
