"""Messages for a GUI user: one message-bar item (with a fix-it button where there is one), details in the log.

Every message also goes to the QGIS log panel under the "GeoVec" tab, with the full
details (log tails, commands) that do not belong in the message bar.
"""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import Qgis, QgsMessageLog
from qgis.gui import QgsMessageBarItem
from qgis.PyQt.QtWidgets import QPushButton

TAG = "GeoVec"
#: (button text, callback) offered with a message
Action = tuple[str, Callable[[], None]]


def log(text: str, level: Qgis.MessageLevel = Qgis.Info) -> None:
    """Write ``text`` to the GeoVec tab of the QGIS log panel."""
    QgsMessageLog.logMessage(text, TAG, level, notifyUser=False)


def notify(iface, text: str, level: Qgis.MessageLevel = Qgis.Info, *, details: str = "",
           action: Action | None = None, duration: int | None = None) -> QgsMessageBarItem:
    """One message-bar item (errors stay until closed); ``details`` go to the log panel only.

    Returns the item, so that a message about a problem can be taken back once it is fixed.
    """
    log(text + (f"\n{details}" if details else ""), level)
    bar = iface.messageBar()
    if duration is None:
        duration = 0 if level == Qgis.Critical else 8
    item = bar.createMessage(TAG, text)
    if action is not None:
        button = QPushButton(action[0], item)
        button.setObjectName("GeoVecMessageAction")
        button.clicked.connect(action[1])
        button.clicked.connect(lambda: bar.popWidget(item))
        item.layout().addWidget(button)
    bar.pushWidget(item, level, duration)
    return item


def withdraw(iface, items: list[QgsMessageBarItem]) -> None:
    """Take ``items`` off the message bar (those the user closed already are skipped)."""
    bar = iface.messageBar()
    for item in items:
        try:
            if item in bar.items():
                bar.popWidget(item)
        except RuntimeError:  # deleted with the bar
            pass
