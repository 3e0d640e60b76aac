"""Public benchmark datasets in the folder layouts their authors distribute.

Each ``load_*`` takes the dataset's folder (or file) as unpacked from the
authors' archive and returns the plain records of :mod:`.formats`; images are
only listed here, read later in batches.

===============  ==============================================================
UC Merced        ``UCMerced_LandUse/Images/<class>/<class>NN.tif`` (21 classes,
                 lowercase compounds such as ``denseresidential``)
AID              ``AID/<Class>/<class>_N.jpg`` (30 classes, CamelCase such as
                 ``BareLand``)
RSICD            ``dataset_rsicd.json`` + ``RSICD_images/`` (Karpathy-style JSON:
                 ``images[].filename``, ``.split``, ``.sentences[].raw``)
RSITMD           ``dataset_RSITMD.json`` + ``images/`` (same JSON schema)
RSVQA LR         ``LR_split_{train,val,test}_{questions,answers,images}.json`` +
                 ``Images_LR/<img_id>.tif``
RSVQA HR         ``USGS_split_{train,val,test,test_phili}_{...}.json`` +
                 ``Data/<img_id>.tif``
DIOR-RSVG        ``Annotations/<NNNNN>.xml`` (VOC with ``<description>``),
                 ``JPEGImages/<NNNNN>.jpg`` and ``train.txt`` / ``val.txt`` /
                 ``test.txt``: one line per object, its index when every
                 ``<object>`` of the annotation files is counted in file order
===============  ==============================================================
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from ...backend.errors import InputError, NotFoundError
from .formats import (
    IMAGE_EXT,
    CaptionSample,
    GroundingSample,
    SceneSample,
    VQASample,
    load_caption_json,
    load_rsvqa,
)

#: lowercase compound class names (UC Merced, DIOR) and their words
COMPOUNDS = {
    "baseballdiamond": "baseball diamond", "baseballfield": "baseball field", "basketballcourt": "basketball court",
    "denseresidential": "dense residential", "golfcourse": "golf course", "golffield": "golf field",
    "groundtrackfield": "ground track field", "mediumresidential": "medium residential",
    "mobilehomepark": "mobile home park", "parkinglot": "parking lot", "sparseresidential": "sparse residential",
    "storagetank": "storage tank", "storagetanks": "storage tanks", "tenniscourt": "tennis court",
    "trainstation": "train station", "windmill": "wind mill",
}
SPLITS_HINT = "use --split with one of the splits listed"


def readable_class(folder_name: str) -> str:
    """``denseresidential`` / ``DenseResidential`` / ``dense_residential`` -> ``dense residential``."""
    name = folder_name.strip()
    if name.lower() in COMPOUNDS:
        return COMPOUNDS[name.lower()]
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)
    return " ".join(re.split(r"[\s_\-]+", name)).lower().strip()


def load_scene_classes(root: str | Path) -> list[SceneSample]:
    """UC Merced / AID: one folder per class (``root`` may be the archive's top folder or ``Images/``)."""
    r = Path(root)
    if not r.is_dir():
        raise NotFoundError(f"scene folder not found: {r}", "pass the unpacked UCMerced_LandUse or AID folder")
    if (r / "Images").is_dir():  # UCMerced_LandUse/Images/<class>/
        r = r / "Images"
    out = [SceneSample(str(f), readable_class(d.name))
           for d in sorted(p for p in r.iterdir() if p.is_dir())
           for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_EXT]
    if not out:
        raise InputError(f"no class sub-folders with images under {r}", "expected <root>/<class>/<image>")
    return out


def _folder_holding(name: str, candidates: Iterable[Path]) -> Path | None:
    return next((d for d in candidates if (d / name).is_file()), None)


def load_caption_dataset(json_path: str | Path, image_dir: str | Path | None = None, *,
                         split: str = "test") -> list[CaptionSample]:
    """RSICD / RSITMD: the caption JSON and its image folder (found beside the JSON when not given).

    Images whose ``split`` is ``split``; a JSON without split fields is used whole.
    """
    p = Path(json_path)
    if p.is_dir():  # the dataset folder: its one dataset_*.json
        found = sorted(p.glob("dataset_*.json"))
        if len(found) != 1:
            raise NotFoundError(f"{len(found)} dataset_*.json files in {p}", "pass the caption JSON itself")
        p = found[0]
    everything = load_caption_json(p, image_dir=image_dir or p.parent)
    if not everything:
        raise InputError(f"{p} lists no image with a caption", "pass the RSICD / RSITMD dataset JSON")
    splits = sorted({s.split for s in everything})
    samples = everything if splits == [""] else [s for s in everything if s.split == split]
    if not samples:
        raise InputError(f"{p.name} has no images in split {split!r} (splits: {splits})", SPLITS_HINT)
    if image_dir is None:
        first = Path(samples[0].path).name
        base = _folder_holding(first, [p.parent, *sorted(d for d in p.parent.iterdir() if d.is_dir())])
        if base is None:
            raise NotFoundError(f"image {first} of {p.name} is neither beside it nor in a sub-folder",
                                "give the image folder: cross_modal_retrieval=JSON:IMAGES")
        samples = [CaptionSample(str(base / Path(s.path).name), s.captions, s.split) for s in samples]
    return samples


def load_rsvqa_dataset(root: str | Path, image_dir: str | Path | None = None, *,
                       split: str = "test") -> list[VQASample]:
    """RSVQA LR (``LR_split_*``, ``Images_LR/``) or HR (``USGS_split_*``, ``Data/``), one split."""
    r = Path(root)
    if not r.is_dir():
        raise NotFoundError(f"RSVQA folder not found: {r}", "pass the unpacked RSVQA_LR or RSVQA_HR folder")
    found = {m.group(1): q for q in sorted(r.glob("*_split_*_questions.json"))
             if (m := re.match(r".+?_split_(.+)_questions\.json$", q.name))}
    if split not in found:
        raise NotFoundError(f"no *_split_{split}_questions.json in {r} (splits: {sorted(found)})", SPLITS_HINT)
    q = found[split]
    prefix = q.name[: -len("questions.json")]
    if image_dir is None:
        image_dir = next((r / d for d in ("Images_LR", "Data", "Images") if (r / d).is_dir()), None)
        if image_dir is None:
            raise NotFoundError(f"no Images_LR/ or Data/ folder in {r}", "unpack the images archive beside the JSON")
    images = Path(image_dir)
    samples = load_rsvqa(q, r / f"{prefix}answers.json", r / f"{prefix}images.json", image_dir=images)
    if samples:  # the authors' images are .tif; take whatever extension the folder holds
        stem = Path(samples[0].path).stem
        ext = next((e for e in (".tif", ".png", ".jpg", ".jpeg") if (images / f"{stem}{e}").is_file()), None)
        if ext is None:
            raise NotFoundError(f"image {stem} of {q.name} not found in {images}", "check the image folder")
        if ext != ".tif":
            samples = [VQASample(str(Path(s.path).with_suffix(ext)), s.question, s.answer, s.qtype) for s in samples]
    return samples


def load_rsvg_dataset(root: str | Path, image_dir: str | Path | None = None, *,
                      split: str = "test") -> list[GroundingSample]:
    """DIOR-RSVG: the objects listed in ``<split>.txt`` (every object when the folder has no split files)."""
    r = Path(root)
    if r.name == "Annotations":
        r = r.parent
    ann = r / "Annotations"
    if not ann.is_dir():
        raise NotFoundError(f"no Annotations/ folder in {r}", "pass the unpacked DIOR_RSVG folder")
    split_files = {f.stem: f for f in r.glob("*.txt") if f.stem in ("train", "val", "test")}
    wanted: set[int] | None = None
    if split_files:
        if split not in split_files:
            raise NotFoundError(f"no {split}.txt in {r} (splits: {sorted(split_files)})", SPLITS_HINT)
        try:
            wanted = {int(x) for x in split_files[split].read_text().split()}
        except ValueError as e:
            raise InputError(f"{split_files[split]} must hold one object index per line: {e}",
                             "pass the split file as distributed") from e
    base = Path(image_dir) if image_dir else r / "JPEGImages"
    out: list[GroundingSample] = []
    count = 0
    for xml in sorted(ann.glob("*.xml")):
        try:
            root_el = ET.parse(xml).getroot()
        except ET.ParseError as e:
            raise InputError(f"{xml} is not valid XML: {e}", "pass the DIOR-RSVG Annotations folder") from e
        filename = root_el.findtext("filename") or xml.with_suffix(".jpg").name
        for obj in root_el.iter("object"):
            index, count = count, count + 1
            if wanted is not None and index not in wanted:
                continue
            bb, desc = obj.find("bndbox"), (obj.findtext("description") or "").strip()
            if bb is None or not desc:
                continue
            box = tuple(float(bb.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
            out.append(GroundingSample(str(base / filename), box, desc,  # type: ignore[arg-type]
                                       (obj.findtext("name") or "").strip()))
    if not out:
        raise InputError(f"no described object in split {split!r} of {r}", "check the split file and annotations")
    return out
