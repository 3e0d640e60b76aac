"""AskPanel: a question and candidate answers about a box drawn on the map."""

from __future__ import annotations

from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QFormLayout, QGroupBox, QLabel, QLineEdit, QPushButton, QWidget

from ..workflow_params import split_names


class AskPanel(QGroupBox):
    """Type a question and answers, then draw the box; the ranked answers show below."""

    drawToggled = pyqtSignal(bool)  # noqa: N815

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Ask about a region", parent)
        self.setObjectName("GeoVecAskPanel")
        form = QFormLayout(self)
        self.question_edit = QLineEdit(self)
        self.question_edit.setPlaceholderText("what covers this area?")
        self.answers_edit = QLineEdit(self)
        self.answers_edit.setPlaceholderText("water, forest, buildings (or yes, no)")
        self.draw_button = QPushButton("Draw box and ask", self)
        self.draw_button.setCheckable(True)
        self.draw_button.toggled.connect(self.drawToggled)
        self.answer_label = QLabel("", self)
        self.answer_label.setWordWrap(True)
        form.addRow("Question", self.question_edit)
        form.addRow("Answers", self.answers_edit)
        form.addRow(self.draw_button)
        form.addRow(self.answer_label)

    def question(self) -> str:
        return self.question_edit.text().strip() or self.question_edit.placeholderText()

    def answers(self) -> list[str]:
        return split_names(self.answers_edit.text())

    def show_answers(self, resp: dict) -> None:
        rows = [f"{a['rank']}. {a['answer']} ({a['score']:+.3f})" for a in resp.get("answers") or []]
        self.answer_label.setText("\n".join(rows) or "no answers")

    def untoggle(self) -> None:
        self.draw_button.blockSignals(True)
        self.draw_button.setChecked(False)
        self.draw_button.blockSignals(False)
