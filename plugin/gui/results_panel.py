"""The dock's results section: a sortable hits table (thumbnail tooltips), zoom to all, save, export."""

from __future__ import annotations

from collections.abc import Callable

from qgis.PyQt.QtCore import QEvent, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QMenu,
    QPushButton,
    QTableWidget,
    QToolButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

COLUMNS = ["Rank", "Score", "Level", "Source"]
EXPORTS = [("GeoPackage (.gpkg)", "gpkg"), ("GeoJSON (.geojson)", "geojson"), ("CSV with WKT (.csv)", "csv")]


class HitsTable(QTableWidget):
    """The hits table; ``tooltip_for(row) -> html`` is asked lazily when a tooltip is due."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.tooltip_for: Callable[[int], str] | None = None
        self.setObjectName("GeoVecHitsTable")
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setSortingEnabled(True)
        self.setMinimumHeight(160)
        self.verticalHeader().setVisible(False)
        header = self.horizontalHeader()
        for col in range(len(COLUMNS) - 1):
            header.setSectionResizeMode(col, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.Stretch)

    def viewportEvent(self, event) -> bool:  # noqa: N802 (Qt API)
        if event.type() == QEvent.ToolTip and self.tooltip_for is not None:
            item = self.itemAt(event.pos())
            html = self.tooltip_for(item.row()) if item is not None else ""
            if html:
                QToolTip.showText(event.globalPos(), html, self.viewport())
                return True
        return super().viewportEvent(event)


class ResultsPanel(QWidget):
    """Signals: ``saveRequested``, ``exportRequested(fmt)``, ``zoomAllRequested``."""

    saveRequested = pyqtSignal()  # noqa: N815 (Qt signal naming)
    exportRequested = pyqtSignal(str)  # noqa: N815
    zoomAllRequested = pyqtSignal()  # noqa: N815

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.table = HitsTable(self)
        lay.addWidget(self.table, 1)
        row = QHBoxLayout()
        self.zoom_all_button = QPushButton("Zoom to all hits", self)
        self.zoom_all_button.clicked.connect(self.zoomAllRequested)
        self.save_button = QPushButton("Save to GeoPackage…", self)
        self.save_button.clicked.connect(self.saveRequested)
        self.export_button = QToolButton(self)
        self.export_button.setText("Export…")
        self.export_button.setPopupMode(QToolButton.InstantPopup)
        menu = QMenu(self.export_button)
        for text, fmt in EXPORTS:
            menu.addAction(text).triggered.connect(lambda _=False, f=fmt: self.exportRequested.emit(f))
        self.export_button.setMenu(menu)
        lay.addWidget(self.zoom_all_button)  # on its own row: the dock stays narrow
        row.addWidget(self.save_button, 1)
        row.addWidget(self.export_button)
        lay.addLayout(row)
