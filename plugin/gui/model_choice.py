"""The model row of the index dialog: says when the model is not on this computer (offline first run)
and offers the ways out: a local checkpoint folder, or the tiny test model with its warning."""

from __future__ import annotations

import os
from pathlib import Path

from qgis.PyQt.QtCore import QProcess, QProcessEnvironment, pyqtSignal
from qgis.PyQt.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from ..backend_manager import child_env, data_dir, find_command

TINY_WARNING = ("Tiny test model: random weights, its hits are meaningless. Use it only to try the plugin; "
                "index again with a real model for real searches.")


def hf_cache() -> Path:
    """Where Hugging Face keeps downloaded models (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(home) / "hub"


def hub_id(model: str, models: list[dict]) -> str | None:
    """The hub repository ``model`` downloads from (a preset's base model), None for a local folder."""
    if Path(model).expanduser().is_dir():
        return None
    for info in models:
        if info.get("name") == model and info.get("kind") == "preset":
            base = str(info.get("description", "")).split(" + ")[0].strip()
            return base if "/" in base else None
    return model if model.count("/") == 1 else None


def looks_like_path(model: str) -> bool:
    """A folder path rather than a preset name or a hub id (``owner/name``)."""
    expanded = os.path.expanduser(model)
    return (os.path.isabs(expanded) or model.startswith((".", "~")) or "\\" in model
            or model.count("/") > 1)


def model_problem(model: str) -> str:
    """Why ``model`` cannot be used at all ('' when it may be): a checkpoint folder that is not there."""
    if not model or not looks_like_path(model):
        return ""
    path = Path(model).expanduser()
    if not path.exists():
        return (f"The model folder {path} does not exist: choose a local checkpoint folder, a preset, or the "
                "tiny test model.")
    if not path.is_dir() or not (path / "config.json").is_file():
        return f"{path} is not a model checkpoint (no config.json): choose the folder that holds config.json."
    return ""


def missing_model(model: str, models: list[dict]) -> str:
    """A warning when ``model`` would have to be downloaded (not in the local cache), else ''."""
    if not model:
        return ""
    if model_problem(model):
        return model_problem(model)
    if Path(model).expanduser().is_dir():
        return ""
    repo = hub_id(model, models)
    if repo is None:
        return ""
    if (hf_cache() / ("models--" + repo.replace("/", "--"))).is_dir():
        return ""
    return (f"The model {model} ({repo}) is not on this computer: indexing will download it (several GB) and "
            "fails without internet. Choose a local checkpoint folder, or the tiny test model to try the plugin.")


class ModelChoice(QWidget):
    """Model text field, "Local checkpoint…", "Tiny test model" and the warning line."""

    changed = pyqtSignal(str)

    def __init__(self, model: str, models: list[dict] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.models = models or []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.edit = QLineEdit(model, self)
        self.edit.setPlaceholderText("preset, local checkpoint folder or hub id")
        self.local_button = QPushButton("Local checkpoint…", self)
        self.local_button.clicked.connect(self._pick_local)
        self.tiny_button = QPushButton("Tiny test model", self)
        self.tiny_button.clicked.connect(self.make_tiny)
        row.addWidget(self.edit, 1)
        row.addWidget(self.local_button)
        row.addWidget(self.tiny_button)
        lay.addLayout(row)
        self.warning = QLabel("", self)
        self.warning.setObjectName("GeoVecModelWarning")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #8a5300")
        lay.addWidget(self.warning)
        self.process: QProcess | None = None
        self.edit.textChanged.connect(self._check)
        self._check(model)

    def text(self) -> str:
        return self.edit.text().strip()

    def _check(self, model: str) -> None:
        model = model.strip()
        tiny = Path(model).expanduser().name == "tiny-model" or model == "tiny"
        self.warning.setText(TINY_WARNING if tiny else missing_model(model, self.models))
        self.changed.emit(model)

    def _pick_local(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Model checkpoint folder (holds config.json)", self.text())
        if path:
            self.edit.setText(path)

    def make_tiny(self) -> QProcess | None:
        """Write the tiny test model with the backend's ``model tiny`` command (without blocking)."""
        cmd, _ = find_command()
        if not cmd:
            self.warning.setText("No GeoVec backend found to make the tiny model: run GeoVec > Set up backend.")
            return None
        out = data_dir() / "tiny-model"
        self.tiny_button.setEnabled(False)
        self.warning.setText("Writing the tiny test model…")
        proc = QProcess(self)
        env = QProcessEnvironment()
        for key, value in child_env().items():
            env.insert(key, value)
        proc.setProcessEnvironment(env)
        args = cmd[1:] + ["model", "tiny", str(out)]
        proc.finished.connect(lambda code, _status: self._tiny_done(code, out))
        proc.start(cmd[0], args)
        self.process = proc
        return proc

    def _tiny_done(self, code: int, out: Path) -> None:
        self.tiny_button.setEnabled(True)
        if code == 0 and (out / "config.json").is_file():
            self.edit.setText(str(out))
        else:
            err = bytes(self.process.readAllStandardError()).decode(errors="replace")[-300:] if self.process else ""
            self.warning.setText(f"Could not write the tiny model (exit {code}): {err}")
