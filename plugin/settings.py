"""Every QgsSettings key of the plugin, with its default, in one enum."""

from __future__ import annotations

from enum import Enum
from typing import Any

from qgis.core import QgsSettings

PREFIX = "geovec/"


class Setting(Enum):
    """A settings key and its default value (the default also fixes the value's type)."""

    BACKEND_URL = ("backend/url", "")  # empty: the URL in the token file
    TOKEN_FILE = ("backend/token_file", "")  # empty: GEOVEC_TOKEN_FILE or the platform default
    BACKEND_COMMAND = ("backend/command", "")  # geovec executable, python, or environment dir
    MANAGED_ENV = ("backend/managed_env", "")  # empty: <QGIS settings dir>/geovec/env
    SETUP_PYTHON = ("backend/setup_python", "")  # python used to create the managed env
    WHEELS_DIR = ("backend/wheels_dir", "")  # install the backend from this folder of wheels (offline)
    AUTO_START = ("backend/auto_start", True)
    MODEL = ("backend/model", "vlm2vec-qwen2vl-2b")  # preset, local path or hub id
    DEVICE = ("backend/device", "auto")  # auto | cuda | cpu
    START_TIMEOUT_S = ("backend/start_timeout_s", 120)
    ALLOWED_ROOTS = ("backend/allowed_roots", "")  # folders the started backend may use (os.pathsep); empty: any
    LAST_INDEX = ("dock/last_index", "")
    RECENT_INDEXES = ("dock/recent_indexes", "")  # paths joined by '\n'
    K = ("dock/k", 10)
    MIN_SCORE = ("dock/min_score", 0.0)
    EXCLUDE_OWN = ("dock/exclude_own", True)
    CONDITION_LOCATION = ("dock/condition_location", False)
    LEVEL = ("dock/level", "tile")  # tile | region
    RERANK = ("dock/rerank", 0)  # 0: auto
    IN_VIEW = ("dock/in_view", False)
    DOCK_OPEN = ("dock/open", False)  # reopen the dock at the next start
    TILE_SIZE = ("index/tile_size", 256)
    OVERLAP = ("index/overlap", 0.0)

    @property
    def key(self) -> str:
        return PREFIX + self.value[0]

    @property
    def default(self) -> Any:
        return self.value[1]

    def get(self) -> Any:
        """The stored value converted to the default's type (the default when unset or unreadable)."""
        raw = QgsSettings().value(self.key, self.default)
        kind = type(self.default)
        if kind is bool:
            return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
        try:
            return kind(raw)
        except (TypeError, ValueError):
            return self.default

    def set(self, value: Any) -> None:
        QgsSettings().setValue(self.key, value)

    def reset(self) -> None:
        QgsSettings().remove(self.key)
