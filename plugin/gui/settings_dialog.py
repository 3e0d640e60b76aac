"""Settings dialog: backend URL, token file, backend command/environment, model, device."""

from __future__ import annotations

from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from ..settings import Setting

TEXT_KEYS = {
    Setting.BACKEND_URL: "Backend URL (empty: from the token file)",
    Setting.TOKEN_FILE: "Token file (empty: default)",
    Setting.BACKEND_COMMAND: "Backend command, python or environment",
    Setting.MANAGED_ENV: "Managed environment folder",
    Setting.SETUP_PYTHON: "Python for 'Set up backend'",
    Setting.WHEELS_DIR: "Install from this wheel folder (offline)",
    Setting.MODEL: "Model (preset, local path or hub id)",
    Setting.ALLOWED_ROOTS: "Folders the backend may use (empty: any)",
}


class SettingsDialog(QDialog):
    """Edits the backend settings; OK stores them in QgsSettings."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("GeoVec settings")
        form = QFormLayout(self)
        self.edits: dict[Setting, QLineEdit] = {}
        for key, label in TEXT_KEYS.items():
            edit = QLineEdit(str(key.get()), self)
            edit.setPlaceholderText(str(key.default) or "default")
            self.edits[key] = edit
            form.addRow(label, edit)
        self.device = QComboBox(self)
        self.device.addItems(["auto", "cuda", "cpu"])
        self.device.setCurrentText(Setting.DEVICE.get())
        form.addRow("Device", self.device)
        self.auto_start = QCheckBox("Start the backend when none answers", self)
        self.auto_start.setChecked(Setting.AUTO_START.get())
        form.addRow(self.auto_start)
        self.timeout = QSpinBox(self)
        self.timeout.setRange(5, 3600)
        self.timeout.setValue(Setting.START_TIMEOUT_S.get())
        form.addRow("Start timeout (s)", self.timeout)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def save(self) -> None:
        for key, edit in self.edits.items():
            key.set(edit.text().strip())
        Setting.DEVICE.set(self.device.currentText())
        Setting.AUTO_START.set(self.auto_start.isChecked())
        Setting.START_TIMEOUT_S.set(self.timeout.value())

    def accept(self) -> None:
        self.save()
        super().accept()
