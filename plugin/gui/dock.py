"""GeoVecDock: widgets only. It turns widget values into parameters and emits signals."""

from __future__ import annotations

from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..params import IndexParams
from ..settings import Setting


class GeoVecDock(QgsDockWidget):
    """Index picker, query modes, options, results table and a status line."""

    indexChosen = pyqtSignal(str)  # noqa: N815 (Qt signal naming)
    newIndexRequested = pyqtSignal(object)  # noqa: N815 - IndexParams
    toolToggled = pyqtSignal(str, bool)  # noqa: N815 - "box" | "point", checked
    textSearchRequested = pyqtSignal(str)  # noqa: N815
    saveRequested = pyqtSignal()  # noqa: N815
    cancelRequested = pyqtSignal()  # noqa: N815
    reconnectRequested = pyqtSignal()  # noqa: N815

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("GeoVec", parent)
        self.setObjectName("GeoVecDock")
        body = QWidget(self)
        lay = QVBoxLayout(body)

        status_row = QHBoxLayout()
        self.backend_label = QLabel("Backend: not connected", body)
        self.backend_label.setWordWrap(True)
        self.reconnect_button = QToolButton(body)
        self.reconnect_button.setText("Connect")
        self.reconnect_button.clicked.connect(self.reconnectRequested)
        status_row.addWidget(self.backend_label, 1)
        status_row.addWidget(self.reconnect_button)
        lay.addLayout(status_row)

        box = QGroupBox("Index", body)
        ilay = QVBoxLayout(box)
        row = QHBoxLayout()
        self.index_combo = QComboBox(box)
        self.index_combo.setEditable(True)
        self.index_combo.setToolTip("index directory")
        self.index_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.index_combo.setMinimumContentsLength(12)
        self.index_combo.currentTextChanged.connect(self.indexChosen)
        browse = QToolButton(box)
        browse.setText("…")
        browse.clicked.connect(self._browse_index)
        row.addWidget(self.index_combo, 1)
        row.addWidget(browse)
        ilay.addLayout(row)
        row = QHBoxLayout()
        self.new_index_button = QPushButton("New index from folder…", box)
        self.new_index_button.clicked.connect(self._new_index)
        self.cancel_button = QPushButton("Cancel", box)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancelRequested)
        row.addWidget(self.new_index_button, 1)
        row.addWidget(self.cancel_button)
        ilay.addLayout(row)
        self.progress = QProgressBar(box)
        self.progress.setVisible(False)
        self.job_label = QLabel("", box)
        self.job_label.setWordWrap(True)
        ilay.addWidget(self.progress)
        ilay.addWidget(self.job_label)
        lay.addWidget(box)

        box = QGroupBox("Query", body)
        qlay = QVBoxLayout(box)
        row = QHBoxLayout()
        self.box_button = QPushButton("Draw box", box)
        self.point_button = QPushButton("Click point", box)
        for name, button in (("box", self.box_button), ("point", self.point_button)):
            button.setCheckable(True)
            button.toggled.connect(lambda checked, n=name: self.toolToggled.emit(n, checked))
            row.addWidget(button)
        qlay.addLayout(row)
        row = QHBoxLayout()
        self.text_edit = QLineEdit(box)
        self.text_edit.setPlaceholderText("describe what to find, e.g. storage tanks")
        self.text_edit.returnPressed.connect(self._text_search)
        self.text_button = QPushButton("Search", box)
        self.text_button.clicked.connect(self._text_search)
        row.addWidget(self.text_edit, 1)
        row.addWidget(self.text_button)
        qlay.addLayout(row)
        form = QFormLayout()
        self.k_spin = QSpinBox(box)
        self.k_spin.setRange(1, 1000)
        self.k_spin.setValue(Setting.K.get())
        self.min_score_spin = QDoubleSpinBox(box)
        self.min_score_spin.setRange(-1.0, 1.0)
        self.min_score_spin.setSingleStep(0.05)
        self.min_score_spin.setDecimals(3)
        self.min_score_spin.setValue(Setting.MIN_SCORE.get())
        self.exclude_check = QCheckBox("Exclude the query's own tiles", box)
        self.exclude_check.setChecked(Setting.EXCLUDE_OWN.get())
        self.location_check = QCheckBox("Condition on location", box)
        self.location_check.setChecked(Setting.CONDITION_LOCATION.get())
        form.addRow("Results (k)", self.k_spin)
        form.addRow("Minimum score", self.min_score_spin)
        qlay.addLayout(form)
        qlay.addWidget(self.exclude_check)
        qlay.addWidget(self.location_check)
        lay.addWidget(box)

        self.table = QTableWidget(0, 3, body)
        self.table.setHorizontalHeaderLabels(["Rank", "Score", "Source"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.Stretch)
        lay.addWidget(self.table, 1)
        self.save_button = QPushButton("Save results to GeoPackage…", body)
        self.save_button.clicked.connect(self.saveRequested)
        lay.addWidget(self.save_button)
        self.status_label = QLabel("", body)
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.status_label)
        self.setWidget(body)

    # --- values -------------------------------------------------------------------------
    def index_path(self) -> str:
        return self.index_combo.currentText().strip()

    def set_indexes(self, paths: list[str], current: str = "") -> None:
        self.index_combo.blockSignals(True)
        self.index_combo.clear()
        self.index_combo.addItems([p for p in paths if p])
        self.index_combo.setEditText(current or (paths[0] if paths else ""))
        self.index_combo.blockSignals(False)

    def options(self) -> dict:
        """k, min_score (None at -1), exclude_own, condition_location."""
        min_score = self.min_score_spin.value()
        return {"k": self.k_spin.value(), "min_score": None if min_score <= -1.0 else min_score,
                "exclude_own": self.exclude_check.isChecked(),
                "condition_location": self.location_check.isChecked()}

    def index_params(self, folder: str, index: str) -> IndexParams:
        return IndexParams(folder=folder, index=index, model=Setting.MODEL.get() or None,
                           tile_size=Setting.TILE_SIZE.get(), overlap=Setting.OVERLAP.get())

    # --- feedback -------------------------------------------------------------------------
    def set_backend_status(self, text: str) -> None:
        self.backend_label.setText(text)

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def set_job_running(self, running: bool) -> None:
        self.new_index_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.progress.setVisible(running)
        if running:
            self.progress.setValue(0)

    def uncheck_tools(self) -> None:
        for button in (self.box_button, self.point_button):
            button.blockSignals(True)
            button.setChecked(False)
            button.blockSignals(False)

    # --- slots ----------------------------------------------------------------------------
    def _text_search(self) -> None:
        text = self.text_edit.text().strip()
        if text:
            self.textSearchRequested.emit(text)
        else:
            self.set_status("Type a description first, e.g. 'water' or 'storage tanks'.")

    def _browse_index(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a GeoVec index folder", self.index_path())
        if path:
            self.index_combo.setEditText(path)

    def _new_index(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of GeoTIFFs to index")
        if not folder:
            return
        index, _ = QFileDialog.getSaveFileName(self, "New index folder", folder.rstrip("/\\") + "_geovec")
        if index:
            self.newIndexRequested.emit(self.index_params(folder, index))
