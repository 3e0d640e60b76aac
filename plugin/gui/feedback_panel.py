"""FeedbackPanel: mark hits good / bad, "Refine" the query from the marks, save the marks as a layer."""

from __future__ import annotations

from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget


class FeedbackPanel(QGroupBox):
    """Marks live here (tile id -> "good" | "bad"); the controller reads them and the selected hit."""

    markRequested = pyqtSignal(str)  # noqa: N815 - "good" | "bad" | "clear" for the selected hit(s)
    refineRequested = pyqtSignal()  # noqa: N815
    saveMarksRequested = pyqtSignal()  # noqa: N815

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Relevance feedback", parent)
        self.setObjectName("GeoVecFeedbackPanel")
        self.marks: dict[str, str] = {}
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.good_button = QPushButton("Good", self)
        self.bad_button = QPushButton("Bad", self)
        self.clear_button = QPushButton("Clear marks", self)
        self.good_button.setToolTip("mark the selected hit as a good match")
        self.bad_button.setToolTip("mark the selected hit as a wrong match")
        self.good_button.clicked.connect(lambda: self.markRequested.emit("good"))
        self.bad_button.clicked.connect(lambda: self.markRequested.emit("bad"))
        self.clear_button.clicked.connect(lambda: self.markRequested.emit("clear"))
        for b in (self.good_button, self.bad_button, self.clear_button):
            row.addWidget(b)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.refine_button = QPushButton("Refine", self)
        self.refine_button.setToolTip("search again with the query moved towards the good marks, away from the bad")
        self.refine_button.clicked.connect(self.refineRequested)
        self.save_button = QPushButton("Save marks as training layer…", self)
        self.save_button.clicked.connect(self.saveMarksRequested)
        row.addWidget(self.refine_button)
        lay.addLayout(row)
        lay.addWidget(self.save_button)  # on its own row: the dock stays narrow
        self.count_label = QLabel("", self)
        self.count_label.setWordWrap(True)
        lay.addWidget(self.count_label)
        self.update_counts()

    def mark(self, tile_ids: list[str], how: str) -> None:
        for t in tile_ids:
            if how == "clear":
                self.marks.pop(t, None)
            else:
                self.marks[t] = how
        self.update_counts()

    def clear(self) -> None:
        self.marks = {}
        self.update_counts()

    def good(self) -> list[str]:
        return [t for t, m in self.marks.items() if m == "good"]

    def bad(self) -> list[str]:
        return [t for t, m in self.marks.items() if m == "bad"]

    def update_counts(self) -> None:
        g, b = len(self.good()), len(self.bad())
        self.count_label.setText(f"{g} good, {b} bad" if g or b else "Select a hit, then mark it Good or Bad.")
        self.refine_button.setEnabled(bool(g or b))
        self.save_button.setEnabled(bool(g))
