"""Server settings, read from ``GEOVEC_*`` environment variables when the server starts.

Nothing here runs at import time: :meth:`Settings.from_env` is called by
``geovec serve`` (and by tests) and command-line flags override the environment.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError

#: Host names a browser can only reach on this machine; the Host header must be one of them.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
ENV_PREFIX = "GEOVEC_"


def _bool(v: str) -> bool:
    return v.strip().lower() in ("1", "true", "yes", "on")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseModel):
    """Everything ``geovec serve`` needs; see :meth:`from_env` for the variable names."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 = a random free port")
    device: Literal["auto", "cuda", "cpu"] = "auto"
    model: str | None = Field(None, description="model loaded on first use (preset, local dir or hub id)")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="weights dtype: auto = bf16 on GPUs (GME: fp16) and bf16-capable CPUs, else fp32")
    image_size: int | None = Field(None, ge=28, le=4096,
                                   description="image edge the model sees (default: the preset's; smaller is faster)")
    allow_remote: bool = False
    log_level: str = "INFO"
    token_file: Path
    data_dir: Path
    log_dir: Path
    max_body: int = Field(1 << 20, ge=1024, description="request body cap in bytes")
    auto_resume: bool = Field(True, description="resume interrupted jobs when the server starts")
    model_wait_s: float = Field(60.0, gt=0, description="longest a request waits for the busy model (then 409 busy)")
    allowed_roots: list[Path] = Field(default_factory=list,
                                      description="if set, every folder/index/raster path must lie under one")
    engine: Literal["local", "ray"] = Field("local", description="ray: searches put each index in a shard actor "
                                                                  "on a Ray cluster; the model stays here")
    ray_address: str | None = Field(None, description="engine ray: the cluster (auto, ray://HOST:10001); "
                                                       "None: a local Ray")
    token: str = Field(default_factory=lambda: secrets.token_urlsafe(32))
    url: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``GEOVEC_*`` variables, then ``overrides`` (flags; None = not given).

        Variables: GEOVEC_HOST, GEOVEC_PORT, GEOVEC_DEVICE, GEOVEC_MODEL, GEOVEC_DTYPE, GEOVEC_IMAGE_SIZE, GEOVEC_ALLOW_REMOTE,
        GEOVEC_LOG_LEVEL, GEOVEC_TOKEN_FILE, GEOVEC_DATA_DIR, GEOVEC_LOG_DIR, GEOVEC_MAX_BODY,
        GEOVEC_AUTO_RESUME, GEOVEC_ALLOWED_ROOTS (os.pathsep-separated), GEOVEC_MODEL_WAIT_S, GEOVEC_ENGINE,
        GEOVEC_RAY_ADDRESS.
        """
        import platformdirs

        env = dict(os.environ if env is None else env)

        def get(name: str) -> str | None:
            v = env.get(ENV_PREFIX + name)
            return v if v not in (None, "") else None

        values: dict[str, Any] = {
            "token_file": Path(get("TOKEN_FILE") or platformdirs.user_config_path("geovec") / "server.json"),
            "data_dir": Path(get("DATA_DIR") or platformdirs.user_data_path("geovec")),
            "log_dir": Path(get("LOG_DIR") or platformdirs.user_log_path("geovec")),
        }
        simple = {"HOST": "host", "DEVICE": "device", "MODEL": "model", "LOG_LEVEL": "log_level", "DTYPE": "dtype",
                  "ENGINE": "engine", "RAY_ADDRESS": "ray_address"}
        for var, key in simple.items():
            if get(var):
                values[key] = get(var)
        try:
            if get("PORT"):
                values["port"] = int(get("PORT"))  # type: ignore[arg-type]
            if get("MAX_BODY"):
                values["max_body"] = int(get("MAX_BODY"))  # type: ignore[arg-type]
            if get("IMAGE_SIZE"):
                values["image_size"] = int(get("IMAGE_SIZE"))  # type: ignore[arg-type]
            if get("MODEL_WAIT_S"):
                values["model_wait_s"] = float(get("MODEL_WAIT_S"))  # type: ignore[arg-type]
        except ValueError as e:
            raise InputError(f"bad GEOVEC_PORT/GEOVEC_MAX_BODY/GEOVEC_IMAGE_SIZE/GEOVEC_MODEL_WAIT_S: {e}",
                             "set a number") from e
        for var, key in {"ALLOW_REMOTE": "allow_remote", "AUTO_RESUME": "auto_resume"}.items():
            if get(var):
                values[key] = _bool(get(var))  # type: ignore[arg-type]
        if get("ALLOWED_ROOTS"):
            values["allowed_roots"] = [Path(p) for p in get("ALLOWED_ROOTS").split(os.pathsep) if p]  # type: ignore[union-attr]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def for_docs(cls) -> Settings:
        """Fixed settings used to generate the committed OpenAPI document."""
        return cls(token_file=Path("server.json"), data_dir=Path("data"), log_dir=Path("log"), token="x")

    @property
    def jobs_file(self) -> Path:
        return self.data_dir / "jobs.json"

    @property
    def indexes_dir(self) -> Path:
        """Indexes under here are listed by ``GET /v1/indexes`` without being opened first."""
        return self.data_dir / "indexes"

    @property
    def models_dir(self) -> Path:
        """Local checkpoints under here are listed by ``GET /v1/models``."""
        return self.data_dir / "models"
