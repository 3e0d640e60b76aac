"""What ``/v1/health`` says about the model while it loads: state, step, stage and seconds so far.

Loading the full-size model takes tens of seconds on a CPU (importing torch and
transformers alone takes seconds). Health is answered from the event loop
without waiting for the load, so a client sees ``loading`` with the step it is
on, and ``failed`` with the reason if it fails.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

State = Literal["none", "loading", "ready", "failed"]

#: The steps of a load, in order (step numbers in health count from 1).
STEPS = ("importing torch and transformers", "reading weights and building the model")


@dataclass
class LoadProgress:
    """Thread-safe record of the current (or last) model load."""

    state: State = "none"
    model: str | None = None
    step: int = 0
    stage: str = ""
    error: str = ""
    started: float = 0.0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def begin(self, model: str) -> None:
        """A load of ``model`` is under way (step 0, "starting", until :meth:`enter`); keeps the start of one begun."""
        with self._lock:
            if self.state != "loading":
                self.started = time.monotonic()
            self.state, self.model, self.error = "loading", model, ""
            self.step, self.stage, self.seconds = 0, "starting", 0.0

    def enter(self, step: int) -> None:
        """Now on ``STEPS[step - 1]``."""
        with self._lock:
            self.step, self.stage = step, STEPS[step - 1]

    def done(self) -> None:
        with self._lock:
            self.state, self.step, self.stage = "ready", len(STEPS), ""
            self.seconds = time.monotonic() - self.started

    def fail(self, error: str) -> None:
        with self._lock:
            self.state, self.error = "failed", error
            self.seconds = time.monotonic() - self.started

    def dropped(self) -> None:
        with self._lock:
            if self.state == "ready":
                self.state = "none"

    def report(self) -> dict[str, Any]:
        """The health fields: model_state, load_step, load_steps, load_stage, load_seconds, load_error."""
        with self._lock:
            secs = time.monotonic() - self.started if self.state == "loading" else self.seconds
            return {"model_state": self.state, "load_step": self.step, "load_steps": len(STEPS),
                    "load_stage": self.stage, "load_seconds": round(secs, 1), "load_error": self.error}
