"""The dock's index section: current index, "New index…", summary, job progress and cancel."""

from __future__ import annotations

from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .index_dialog import IndexDialog


class IndexPanel(QGroupBox):
    """Signals: ``indexChosen(path)``, ``newIndexRequested(IndexParams)``, ``cancelRequested``,
    ``summaryRequested(path)``."""

    indexChosen = pyqtSignal(str)  # noqa: N815 (Qt signal naming)
    newIndexRequested = pyqtSignal(object)  # noqa: N815 - IndexParams
    cancelRequested = pyqtSignal()  # noqa: N815
    summaryRequested = pyqtSignal(str)  # noqa: N815

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Index", parent)
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.index_combo = QComboBox(self)
        self.index_combo.setEditable(True)
        self.index_combo.setToolTip("index folder")
        self.index_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.index_combo.setMinimumContentsLength(12)
        self.index_combo.currentTextChanged.connect(self.indexChosen)
        browse = QToolButton(self)
        browse.setText("…")
        browse.setToolTip("Choose an index folder")
        browse.clicked.connect(self._browse_index)
        self.summary_button = QToolButton(self)
        self.summary_button.setText("ℹ")
        self.summary_button.setToolTip("Summary of this index: scenes, tiles, model, CRS, size on disk")
        self.summary_button.clicked.connect(lambda: self.summaryRequested.emit(self.index_path()))
        self.compare_button = QToolButton(self)
        self.compare_button.setText("⇄")
        self.compare_button.setToolTip("Compare dates: what changed between two dates of this index (change maps)")
        self.compare_button.clicked.connect(self.compare_dates)
        row.addWidget(self.index_combo, 1)
        row.addWidget(browse)
        row.addWidget(self.summary_button)
        row.addWidget(self.compare_button)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.new_index_button = QPushButton("New index from folder…", self)
        self.new_index_button.clicked.connect(self._new_index)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancelRequested)
        row.addWidget(self.new_index_button, 1)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        self.progress = QProgressBar(self)
        self.progress.setVisible(False)
        self.job_label = QLabel("", self)
        self.job_label.setWordWrap(True)
        lay.addWidget(self.progress)
        lay.addWidget(self.job_label)
        self.dialog: IndexDialog | None = None
        self.models: list[dict] = []  # the backend's GET /v1/models, once connected

    def compare_dates(self) -> None:
        """The Processing dialog 'Compare dates (change)' with this index filled in."""
        import processing

        processing.execAlgorithmDialog("geovec:change", {"INDEX": self.index_path()} if self.index_path() else {})

    def index_path(self) -> str:
        return self.index_combo.currentText().strip()

    def set_indexes(self, paths: list[str], current: str = "") -> None:
        self.index_combo.blockSignals(True)
        self.index_combo.clear()
        self.index_combo.addItems([p for p in paths if p])
        self.index_combo.setEditText(current or (paths[0] if paths else ""))
        self.index_combo.blockSignals(False)

    def set_job_running(self, running: bool) -> None:
        self.new_index_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.progress.setVisible(running)
        if running:
            self.progress.setValue(0)

    def _browse_index(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a GeoVec index folder", self.index_path())
        if path:
            self.index_combo.setEditText(path)

    def _new_index(self) -> None:
        """Open the index dialog (non-modal); its accepted parameters start the job."""
        self.dialog = IndexDialog(self.window(), self.models)
        self.dialog.accepted.connect(lambda: self.newIndexRequested.emit(self.dialog.params()))
        self.dialog.show()
