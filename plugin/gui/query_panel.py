"""The dock's query section: draw box / click point, text, level, search in view, options."""

from __future__ import annotations

from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..params import AUTO_RERANK
from ..settings import Setting

LEVELS = [("Whole tiles", "tile"), ("Regions inside tiles", "region")]


class QueryPanel(QGroupBox):
    """Signals: ``toolToggled("box"|"point", checked)``, ``textSearchRequested(text)``, ``statusText(text)``.

    Text typed here also goes with a drawn box or clicked point (one compositional query).
    """

    toolToggled = pyqtSignal(str, bool)  # noqa: N815 (Qt signal naming)
    textSearchRequested = pyqtSignal(str)  # noqa: N815
    statusText = pyqtSignal(str)  # noqa: N815

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Query", parent)
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.text_edit = QLineEdit(self)
        self.text_edit.setPlaceholderText("describe what to find, e.g. storage tanks")
        self.text_edit.setToolTip("Search finds this text; with a drawn box or clicked point it refines that query")
        self.text_edit.setClearButtonEnabled(True)
        self.text_edit.returnPressed.connect(self._text_search)
        self.text_button = QPushButton("Search", self)
        self.text_button.clicked.connect(self._text_search)
        row.addWidget(self.text_edit, 1)
        row.addWidget(self.text_button)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.box_button = QPushButton("Draw box", self)
        self.point_button = QPushButton("Click point", self)
        for name, button in (("box", self.box_button), ("point", self.point_button)):
            button.setCheckable(True)
            button.toggled.connect(lambda checked, n=name: self.toolToggled.emit(n, checked))
            row.addWidget(button)
        lay.addLayout(row)
        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)
        self.level_combo = QComboBox(self)
        for text, value in LEVELS:
            self.level_combo.addItem(text, value)
        self.level_combo.setCurrentIndex(1 if Setting.LEVEL.get() == "region" else 0)
        self.level_combo.setToolTip("Whole tiles (each with its best regions outlined), or the regions inside "
                                    "tiles ranked by themselves (for a referring expression)")
        self.level_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.level_combo.setMinimumContentsLength(12)
        self.k_spin = QSpinBox(self)
        self.k_spin.setRange(1, 1000)
        self.k_spin.setValue(Setting.K.get())
        self.min_score_spin = QDoubleSpinBox(self)
        self.min_score_spin.setRange(-1.0, 1.0)
        self.min_score_spin.setSingleStep(0.05)
        self.min_score_spin.setDecimals(3)
        self.min_score_spin.setValue(Setting.MIN_SCORE.get())
        self.rerank_spin = QSpinBox(self)
        self.rerank_spin.setRange(0, 500)
        self.rerank_spin.setSpecialValueText("auto")
        self.rerank_spin.setValue(Setting.RERANK.get())
        self.rerank_spin.setToolTip("Score region candidates inside the top N tiles at query time. auto: the "
                                    "regions the index stores; on an index without stored regions, ranking "
                                    f"regions scores those of the top {AUTO_RERANK} tiles")
        form.addRow("Rank", self.level_combo)
        form.addRow("Regions from top tiles", self.rerank_spin)
        form.addRow("Results (k)", self.k_spin)
        form.addRow("Minimum score", self.min_score_spin)
        lay.addLayout(form)
        self.in_view_check = QCheckBox("Search in view", self)
        self.in_view_check.setToolTip("Only return hits whose tile (or region) centre lies in the current map "
                                      "view, or in the selected polygon of the active layer when one is selected")
        self.in_view_check.setChecked(Setting.IN_VIEW.get())
        self.exclude_check = QCheckBox("Exclude the query's own tiles", self)
        self.exclude_check.setChecked(Setting.EXCLUDE_OWN.get())
        self.location_check = QCheckBox("Condition on location", self)
        self.location_check.setChecked(Setting.CONDITION_LOCATION.get())
        self.heat_check = QCheckBox("Show as heat map", self)
        self.heat_check.setToolTip("Also paint the query's similarity over every tile of the index (or of the "
                                   "view, with 'Search in view') as a raster layer per scene, with a legend")
        for check in (self.in_view_check, self.exclude_check, self.location_check, self.heat_check):
            lay.addWidget(check, 0, Qt.AlignLeft)  # as wide as its text: a click beside it does not toggle it

    def options(self) -> dict:
        """k, min_score (None at -1), level, rerank, in_view, exclude_own, condition_location, heat_map, text."""
        min_score = self.min_score_spin.value()
        level = self.level_combo.currentData()
        rerank = self.rerank_spin.value() or None  # auto: resolved against the index (params.resolve_rerank)
        return {"k": self.k_spin.value(), "min_score": None if min_score <= -1.0 else min_score,
                "level": level, "rerank": rerank, "in_view": self.in_view_check.isChecked(),
                "exclude_own": self.exclude_check.isChecked(),
                "condition_location": self.location_check.isChecked(),
                "heat_map": self.heat_check.isChecked(),
                "text": self.text_edit.text().strip() or None}

    def remember(self) -> None:
        """Store the options so the next session starts with them."""
        Setting.K.set(self.k_spin.value())
        Setting.MIN_SCORE.set(self.min_score_spin.value())
        Setting.LEVEL.set(self.level_combo.currentData())
        Setting.RERANK.set(self.rerank_spin.value())
        Setting.IN_VIEW.set(self.in_view_check.isChecked())
        Setting.EXCLUDE_OWN.set(self.exclude_check.isChecked())
        Setting.CONDITION_LOCATION.set(self.location_check.isChecked())

    def uncheck_tools(self) -> None:
        for button in (self.box_button, self.point_button):
            button.blockSignals(True)
            button.setChecked(False)
            button.blockSignals(False)

    def _text_search(self) -> None:
        text = self.text_edit.text().strip()
        if text:
            self.textSearchRequested.emit(text)
        else:
            self.statusText.emit("Type a description first, e.g. 'water' or 'storage tanks'.")
