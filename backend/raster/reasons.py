"""GDAL's own reason for a failure, instead of rasterio's "Read failed. See previous exception"."""

from __future__ import annotations

_GENERIC = ("see previous exception", "read or write failed")


def gdal_reason(e: BaseException) -> str:
    """The first specific message in ``e``'s chain, with the root cause when it adds something.

    rasterio raises ``RasterioIOError("Read failed. See previous exception for details.")``
    chained to GDAL's errors (``CPLE_*``); a user needs those: which band, which block,
    how many bytes were missing.
    """
    chain: list[str] = []
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen and len(chain) < 20:
        seen.add(id(cur))
        text = (str(cur).strip().splitlines() or [""])[0].strip()
        if text and not any(g in text.lower() for g in _GENERIC):
            chain.append(text)
        cur = cur.__cause__ or cur.__context__
    if not chain:
        return (str(e).strip().splitlines() or [type(e).__name__])[0]
    first, root = chain[0], chain[-1]
    return first if root in first else f"{first} ({root})"
