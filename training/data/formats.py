"""Loaders for the public remote-sensing formats the field evaluates on.

Each returns plain records (paths + annotations); images are read later, a
batch at a time, with :func:`read_image`. The dataset folders as distributed
(UC Merced, AID, DIOR-RSVG, RSVQA's file names) are in :mod:`.layouts`. Formats:

- RSICD / RSITMD caption JSON (Karpathy style): ``{"images": [{"filename", "split",
  "sentences": [{"raw"}]}]}``
- RSVQA JSON: ``*_questions.json``, ``*_answers.json``, ``*_images.json``
- image + lat/lon tables (CSV with columns image/path, lat/latitude, lon/longitude[, text])
- composed-retrieval triplets (JSON list of ``{"reference", "text", "target"}``)
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...backend.errors import InputError, NotFoundError
from ...backend.types import Box

IMAGE_EXT = {".tif", ".tiff", ".jpg", ".jpeg", ".png", ".bmp"}


@dataclass(frozen=True)
class SceneSample:
    path: str
    label: str


@dataclass(frozen=True)
class CaptionSample:
    path: str
    captions: tuple[str, ...]
    split: str = ""  # "" when the JSON has no split field


@dataclass(frozen=True)
class GroundingSample:
    path: str
    bbox: Box  # pixels of the image (x1, y1, x2, y2)
    expression: str
    category: str


@dataclass(frozen=True)
class VQASample:
    path: str
    question: str
    answer: str
    qtype: str


@dataclass(frozen=True)
class GeoSample:
    path: str
    lat: float
    lon: float
    text: str = ""


@dataclass(frozen=True)
class TripletSample:
    reference: str
    text: str
    target: str


def _need(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"{what} not found: {p}", "check the path")
    return p


def _json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not valid JSON: {e}", "pass the dataset's original JSON file") from e


def read_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB as stored, or resized to ``size`` x ``size``."""
    from PIL import Image

    try:
        with Image.open(path) as src:
            rgb = src.convert("RGB")
        if size:
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)
    except OSError as e:
        raise InputError(f"cannot read image {path}: {e}", "use an 8-bit RGB image (tif/jpg/png)") from e


def load_caption_json(path: str | Path, *, image_dir: str | Path | None = None, split: str | None = None) -> list[CaptionSample]:
    """RSICD / RSITMD ``dataset_*.json``; images under ``image_dir`` (default: beside the JSON)."""
    p = _need(path, "caption JSON")
    data = _json(p)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"{p} has no 'images' list", "expected the RSICD/RSITMD dataset JSON")
    base = Path(image_dir) if image_dir else p.parent
    out = []
    for item in data["images"]:
        if split and item.get("split") != split:
            continue
        caps = tuple(s["raw"].strip() for s in item.get("sentences", []) if s.get("raw", "").strip())
        if caps:
            out.append(CaptionSample(str(base / item["filename"]), caps, str(item.get("split", ""))))
    return out


def load_rsvqa(questions: str | Path, answers: str | Path, images: str | Path, *, image_dir: str | Path,
               image_ext: str = ".tif") -> list[VQASample]:
    """RSVQA (LR / HR): question, answer and image JSON files as distributed."""
    q = _json(_need(questions, "RSVQA questions JSON"))
    a = _json(_need(answers, "RSVQA answers JSON"))
    _json(_need(images, "RSVQA images JSON"))
    try:
        answers_by_id = {x["id"]: x["answer"] for x in a["answers"] if x.get("active", True)}  # type: ignore[index]
        out = []
        for x in q["questions"]:  # type: ignore[index]
            if not x.get("active", True) or not x.get("answers_ids"):
                continue
            ans = answers_by_id.get(x["answers_ids"][0])
            if ans is not None:
                out.append(VQASample(str(Path(image_dir) / f"{x['img_id']}{image_ext}"), x["question"], str(ans), x.get("type", "")))
    except (KeyError, TypeError) as e:
        raise InputError(f"RSVQA JSON lacks an expected key: {e}", "pass the original *_questions/answers/images.json") from e
    return out


def load_latlon_csv(path: str | Path, *, image_dir: str | Path | None = None) -> list[GeoSample]:
    """A CSV of images with their location: columns image|path|filename, lat|latitude, lon|lng|longitude."""
    p = _need(path, "lat/lon table")
    base = Path(image_dir) if image_dir else p.parent
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        cols = {c.lower(): c for c in reader.fieldnames or []}

        def col(*names: str) -> str:
            for n in names:
                if n in cols:
                    return cols[n]
            raise InputError(f"{p.name} has no column among {names}", f"columns found: {list(cols)}")

        ci, cla, clo = col("image", "path", "filename"), col("lat", "latitude"), col("lon", "lng", "longitude")
        ct = cols.get("text") or cols.get("caption")
        out = []
        for i, row in enumerate(reader):
            try:
                lat, lon = float(row[cla]), float(row[clo])
            except ValueError as e:
                raise InputError(f"{p.name} row {i + 2}: bad lat/lon {row[cla]!r}, {row[clo]!r}", "use decimal degrees") from e
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise InputError(f"{p.name} row {i + 2}: lat/lon {lat}, {lon} out of range", "lat in [-90, 90], lon in [-180, 180]")
            out.append(GeoSample(str(base / row[ci]), lat, lon, (row.get(ct) or "") if ct else ""))
    return out


def load_triplet_json(path: str | Path, *, image_dir: str | Path | None = None) -> list[TripletSample]:
    """Composed retrieval: a JSON list of ``{"reference": img, "text": change, "target": img}``."""
    p = _need(path, "triplet JSON")
    data = _json(p)
    base = Path(image_dir) if image_dir else p.parent
    if not isinstance(data, list):
        raise InputError(f"{p} must hold a JSON list of triplets", 'e.g. [{"reference": "a.png", "text": "...", "target": "b.png"}]')
    return [TripletSample(str(base / x["reference"]), x["text"], str(base / x["target"])) for x in data]
