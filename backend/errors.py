"""One error hierarchy for the backend.

Every error a user can cause is a :class:`GeoVecError`. Each carries a one-line
``message`` that names the bad value and what is allowed, and a ``hint`` that
says what to do. Only the HTTP layer maps these to status codes
(:data:`HTTP_STATUS`); the CLI prints ``str(err)`` and exits non-zero.
"""

from __future__ import annotations


class GeoVecError(Exception):
    """Base class of every error GeoVec raises on purpose."""

    code = "geovec_error"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(GeoVecError, ValueError):
    """A request or argument is malformed or out of range."""

    code = "bad_input"


class RasterError(InputError):
    """A file is not a readable raster, or lacks what GeoVec needs (e.g. a CRS)."""

    code = "bad_raster"


class CRSError(InputError):
    """A CRS string cannot be parsed or a transform to/from it fails."""

    code = "bad_crs"


class OutOfBoundsError(InputError):
    """A box or point lies outside the raster or the valid coordinate range."""

    code = "out_of_bounds"


class NotFoundError(GeoVecError, FileNotFoundError):
    """A folder, raster, index, model or job does not exist."""

    code = "not_found"


class ForbiddenPathError(GeoVecError, PermissionError):
    """A path lies outside the folders this server may use (the same answer whether it exists or not)."""

    code = "forbidden_path"


class ExistsError(GeoVecError, FileExistsError):
    """Something to be created is already there (an index, a non-empty folder)."""

    code = "exists"


class ModelMismatchError(GeoVecError, ValueError):
    """An index was built with another model or embedding dimension."""

    code = "model_mismatch"


class IndexCorruptError(GeoVecError, RuntimeError):
    """Index files are truncated, tampered with or inconsistent."""

    code = "index_corrupt"


class BusyError(GeoVecError, RuntimeError):
    """Another writer holds the index, or a job is already running on it."""

    code = "busy"


class ModelUnavailableError(GeoVecError, RuntimeError):
    """No model can be loaded (offline, missing path, missing dependency)."""

    code = "model_unavailable"


class WriteError(GeoVecError, OSError):
    """An output cannot be written: a folder in the way, read-only, the folder gone."""

    code = "cannot_write"


class NoSpaceError(WriteError):
    """The disk (or the file size limit) is full while writing an output; nothing half-written is left."""

    code = "no_space"


class CancelledError(GeoVecError):
    """A job was cancelled by the user; work done so far is kept."""

    code = "cancelled"


class ShardError(GeoVecError, RuntimeError):
    """A shard of an index set on a cluster cannot start or does not answer."""

    code = "shard_unavailable"


HTTP_STATUS: dict[type[GeoVecError], int] = {
    InputError: 422,
    NotFoundError: 404,
    ForbiddenPathError: 403,
    ExistsError: 409,
    ModelMismatchError: 409,
    IndexCorruptError: 409,
    BusyError: 409,
    ModelUnavailableError: 503,
    ShardError: 503,
    CancelledError: 409,
    NoSpaceError: 507,
    WriteError: 409,
    GeoVecError: 400,
}


def http_status(err: GeoVecError) -> int:
    """Return the HTTP status for ``err`` (most specific class wins)."""
    for cls in type(err).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 400
