"""Shared shape of the plugin's tasks: an outcome, an error + hint, a callback on the UI thread."""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Enum
from typing import Any

from qgis.core import Qgis, QgsTask

from ..client import BackendError

log = logging.getLogger(__name__)


class Outcome(Enum):
    """What a task ended with; the GUI maps it to a message-bar level."""

    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def level(self) -> Qgis.MessageLevel:
        return {"success": Qgis.Success, "failed": Qgis.Critical, "canceled": Qgis.Warning}[self.value]


class GeoVecTask(QgsTask):
    """Base task: subclasses implement :meth:`work`; :meth:`run` catches everything."""

    def __init__(self, description: str, on_done: Callable[[GeoVecTask], None] | None = None,
                 flags: QgsTask.Flags = QgsTask.CanCancel) -> None:
        super().__init__(description, flags)
        # QGIS deletes a finished task's C++ side; what callers read afterwards lives in Python.
        self.title = description
        self.on_done = on_done
        self.outcome = Outcome.FAILED
        self.result: Any = None
        self.error = ""
        self.hint = ""
        self.details = ""

    def detach(self) -> None:
        """Forget the callback and disconnect every Python slot from this task's signals (on unload)."""
        self.on_done = None
        for name in ("progressChanged", "statusChanged", "status", "log_line"):
            signal = getattr(self, name, None)
            if signal is None:
                continue
            try:
                signal.disconnect()
            except (TypeError, RuntimeError):
                pass

    def work(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self) -> bool:
        try:
            self.result = self.work()
            self.outcome = Outcome.CANCELED if self.isCanceled() else Outcome.SUCCESS
        except BackendError as e:
            self.outcome = Outcome.CANCELED if self.isCanceled() else Outcome.FAILED
            self.error, self.hint, self.details = e.message, e.hint, e.details
        except Exception as e:  # noqa: BLE001 - run() must never raise
            log.exception("%s failed", self.title)
            self.outcome = Outcome.FAILED
            self.error = f"{type(e).__name__}: {e}"
        return self.outcome is Outcome.SUCCESS

    def finished(self, result: bool) -> None:  # noqa: ARG002 - runs on the UI thread
        if self.outcome is Outcome.SUCCESS and not result:
            self.outcome = Outcome.CANCELED
        if self.on_done is not None:
            try:
                self.on_done(self)
            except Exception:  # noqa: BLE001 - never let a callback kill the task manager
                log.exception("callback of %s failed", self.title)

    @property
    def message(self) -> str:
        """One line for the message bar."""
        if self.outcome is Outcome.CANCELED:
            return f"{self.title}: canceled"
        if self.outcome is Outcome.FAILED:
            return f"{self.title} failed: {self.error}" + (f" — {self.hint}" if self.hint else "")
        return f"{self.title}: done"
