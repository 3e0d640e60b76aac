"""GeoVecDock: the backend status line and the index, query and results sections, in a scroll area.

Widgets only: each section lives in its own module and emits signals; the controller
does the work. :meth:`GeoVecDock.add_section` lets other features add their own section.
"""

from __future__ import annotations

from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import QHBoxLayout, QLabel, QScrollArea, QToolButton, QVBoxLayout, QWidget

from .index_panel import IndexPanel
from .query_panel import QueryPanel
from .results_panel import ResultsPanel


class GeoVecDock(QgsDockWidget):
    """The sections are attributes (``index_panel``, ``query_panel``, ``results_panel``); their
    widgets and signals are re-exported here under the names the controller uses."""

    reconnectRequested = pyqtSignal()  # noqa: N815 (Qt signal naming)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("GeoVec", parent)
        self.setObjectName("GeoVecDock")
        self.scroll = QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QScrollArea.NoFrame)
        body = QWidget(self.scroll)
        self.body_layout = lay = QVBoxLayout(body)

        status_row = QHBoxLayout()
        self.backend_label = QLabel("Backend: not connected", body)
        self.backend_label.setWordWrap(True)
        self.reconnect_button = QToolButton(body)
        self.reconnect_button.setText("Connect")
        self.reconnect_button.clicked.connect(self.reconnectRequested)
        status_row.addWidget(self.backend_label, 1)
        status_row.addWidget(self.reconnect_button)
        lay.addLayout(status_row)

        self.index_panel = IndexPanel(body)
        self.query_panel = QueryPanel(body)
        self.results_panel = ResultsPanel(body)
        lay.addWidget(self.index_panel)
        lay.addWidget(self.query_panel)
        lay.addWidget(self.results_panel, 1)
        self.status_label = QLabel("", body)
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.status_label)
        self.scroll.setWidget(body)
        self.setWidget(self.scroll)
        self.query_panel.statusText.connect(self.set_status)
        self._export_names()

    def _export_names(self) -> None:
        ip, qp, rp = self.index_panel, self.query_panel, self.results_panel
        for name in ("index_combo", "new_index_button", "cancel_button", "progress", "job_label", "summary_button",
                     "indexChosen", "newIndexRequested", "cancelRequested", "summaryRequested"):
            setattr(self, name, getattr(ip, name))
        for name in ("box_button", "point_button", "text_edit", "text_button", "k_spin", "min_score_spin",
                     "level_combo", "rerank_spin", "in_view_check", "exclude_check", "location_check", "heat_check",
                     "toolToggled", "textSearchRequested"):
            setattr(self, name, getattr(qp, name))
        for name in ("table", "save_button", "export_button", "zoom_all_button", "saveRequested", "exportRequested",
                     "zoomAllRequested"):
            setattr(self, name, getattr(rp, name))

    def add_section(self, widget: QWidget) -> None:
        """Add a section (another feature's group box) below the query section."""
        self.body_layout.insertWidget(self.body_layout.indexOf(self.results_panel), widget)

    # --- values and feedback --------------------------------------------------------------
    def index_path(self) -> str:
        return self.index_panel.index_path()

    def set_indexes(self, paths: list[str], current: str = "") -> None:
        self.index_panel.set_indexes(paths, current)

    def options(self) -> dict:
        return self.query_panel.options()

    def set_backend_status(self, text: str) -> None:
        self.backend_label.setText(text)

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def set_job_running(self, running: bool) -> None:
        self.index_panel.set_job_running(running)

    def uncheck_tools(self) -> None:
        self.query_panel.uncheck_tools()
