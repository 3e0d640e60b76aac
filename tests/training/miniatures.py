"""Miniatures of the benchmark datasets in the exact folder layouts their authors distribute.

Each writer returns the spec ``geovec eval`` takes for it. Images are tiny
solid-colour files; what matters is names, folders, JSON/XML schema and splits.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

COLOURS = {"beach": (220, 200, 150), "forest": (30, 120, 40), "water": (20, 40, 120), "dense": (120, 110, 100)}


def img(path: Path, colour: tuple[int, int, int], size: int = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)
    return path


def ucmerced(root: Path) -> str:
    """``UCMerced_LandUse/Images/<class>/<class>NN.tif``, lowercase compound class names."""
    base = root / "UCMerced_LandUse" / "Images"
    for cls, rgb in (("beach", COLOURS["beach"]), ("denseresidential", COLOURS["dense"]), ("forest", COLOURS["forest"])):
        for i in range(2):
            img(base / cls / f"{cls}{i:02d}.tif", tuple(min(255, v + 9 * i) for v in rgb))  # type: ignore[arg-type]
    return f"scene_classification={root / 'UCMerced_LandUse'}"


def aid(root: Path) -> str:
    """``AID/<CamelCaseClass>/<class>_N.jpg``."""
    for cls, rgb in (("BareLand", (180, 160, 120)), ("DenseResidential", COLOURS["dense"]), ("Pond", COLOURS["water"])):
        for i in range(1, 3):
            img(root / "AID" / cls / f"{cls.lower()}_{i}.jpg", rgb)
    return f"scene_classification={root / 'AID'}"


def _karpathy(names: list[str], splits: list[str]) -> dict:
    return {"dataset": "rs", "images": [
        {"filename": n, "imgid": i, "split": s, "sentids": [2 * i, 2 * i + 1],
         "sentences": [{"tokens": ["a", "view"], "raw": f"a view of {n[:-4]} .", "imgid": i, "sentid": 2 * i},
                       {"tokens": ["seen"], "raw": f"{n[:-4]} seen from above", "imgid": i, "sentid": 2 * i + 1}]}
        for i, (n, s) in enumerate(zip(names, splits, strict=True))]}


def rsicd(root: Path) -> str:
    """``RSICD/dataset_rsicd.json`` + ``RSICD/RSICD_images/``: 3 test images of 5."""
    names = ["beach_1.jpg", "forest_2.jpg", "water_3.jpg", "beach_4.jpg", "forest_5.jpg"]
    for n in names:
        img(root / "RSICD" / "RSICD_images" / n, COLOURS[n.split("_")[0]])
    (root / "RSICD" / "dataset_rsicd.json").write_text(json.dumps(_karpathy(names, ["test"] * 3 + ["train"] * 2)))
    return f"cross_modal_retrieval={root / 'RSICD' / 'dataset_rsicd.json'}"


def rsitmd(root: Path) -> str:
    """``RSITMD/dataset_RSITMD.json`` + ``RSITMD/images/``: 2 test images of 3."""
    names = ["beach_10.tif", "water_11.tif", "forest_12.tif"]
    for n in names:
        img(root / "RSITMD" / "images" / n, COLOURS[n.split("_")[0]])
    (root / "RSITMD" / "dataset_RSITMD.json").write_text(json.dumps(_karpathy(names, ["test", "test", "train"])))
    return f"cross_modal_retrieval={root / 'RSITMD' / 'dataset_RSITMD.json'}"


def _rsvqa(folder: Path, prefix: str, split: str, image_ids: list[int], first_qid: int) -> None:
    questions, answers, images = [], [], []
    for k, img_id in enumerate(image_ids):
        qids = [first_qid + 2 * k, first_qid + 2 * k + 1]
        images.append({"id": img_id, "date_added": 0, "questions_ids": qids, "original_name": f"t_{img_id}.tif",
                       "active": True})
        for qid, (qtype, q, a) in zip(qids, (("presence", "Is a water area present?", "yes" if img_id % 2 else "no"),
                                             ("count", "How many buildings are there?", str(img_id % 3))), strict=True):
            questions.append({"id": qid, "date_added": 0, "img_id": img_id, "people_id": 0, "type": qtype,
                              "question": q, "answers_ids": [qid], "active": True})
            answers.append({"id": qid, "date_added": 0, "question_id": qid, "people_id": 0, "answer": a,
                            "active": True})
    for kind, data in (("questions", questions), ("answers", answers), ("images", images)):
        (folder / f"{prefix}_split_{split}_{kind}.json").write_text(json.dumps({kind: data}))


def rsvqa_lr(root: Path) -> str:
    """``RSVQA_LR/LR_split_{train,test}_*.json`` + ``Images_LR/<id>.tif``."""
    folder = root / "RSVQA_LR"
    for i, rgb in enumerate(COLOURS.values()):
        img(folder / "Images_LR" / f"{i}.tif", rgb)
    _rsvqa(folder, "LR", "train", [0, 1], 0)
    _rsvqa(folder, "LR", "test", [2, 3], 100)
    return f"vqa={folder}"


def rsvqa_hr(root: Path) -> str:
    """``RSVQA_HR/USGS_split_{test,test_phili}_*.json`` + ``Data/<id>.tif``."""
    folder = root / "RSVQA_HR"
    for i, rgb in enumerate(COLOURS.values()):
        img(folder / "Data" / f"{i}.tif", rgb)
    _rsvqa(folder, "USGS", "test", [0, 1, 2], 0)
    _rsvqa(folder, "USGS", "test_phili", [3], 500)
    return f"vqa={folder}"


def dior_rsvg(root: Path) -> str:
    """``DIOR_RSVG/{Annotations,JPEGImages}`` + ``train.txt`` / ``test.txt`` of global object indices.

    Objects, counted over the XML files in order: 0 ship, 1 tank (00001.xml), 2 vehicle, 3 bridge
    (00002.xml); test = {1, 2, 3}, train = {0}.
    """
    folder = root / "DIOR_RSVG"
    objects = {"00001": (("ship", 2), ("storagetank", 30)), "00002": (("vehicle", 5), ("bridge", 20))}
    for stem, objs in objects.items():
        img(folder / "JPEGImages" / f"{stem}.jpg", (90, 90, 90), size=80)
        body = "".join(
            f"<object><name>{n}</name><bndbox><xmin>{x}</xmin><ymin>4</ymin><xmax>{x + 10}</xmax><ymax>20</ymax>"
            f"</bndbox><description>the {n} at x {x}</description></object>" for n, x in objs)
        (folder / "Annotations").mkdir(parents=True, exist_ok=True)
        (folder / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>80</width><height>80</height><depth>3</depth>"
            f"</size>{body}</annotation>")
    (folder / "train.txt").write_text("0\n")
    (folder / "test.txt").write_text("1\n2\n3\n")
    return f"grounding={folder}"


def triplets(root: Path) -> str:
    """Our composed-retrieval format: a JSON list of {reference, text, target} (paths relative to it)."""
    folder = root / "composed"
    for c, rgb in COLOURS.items():
        img(folder / f"{c}.png", rgb)
    (folder / "triplets.json").write_text(json.dumps([
        {"reference": "beach.png", "text": "covered with trees", "target": "forest.png"},
        {"reference": "forest.png", "text": "flooded", "target": "water.png"}]))
    return f"compositional_retrieval={folder / 'triplets.json'}"


def geo_table(root: Path) -> str:
    """Our geo-localisation format: a CSV with image, lat, lon[, text], images beside it."""
    folder = root / "geo"
    for i, rgb in enumerate(list(COLOURS.values())[:3]):
        img(folder / f"g{i}.png", rgb)
    (folder / "table.csv").write_text("image,lat,lon\ng0.png,35.78,-78.64\ng1.png,-8.05,-34.88\ng2.png,48.85,2.35\n")
    return f"geo_localization={folder / 'table.csv'}"


def write_all(root: Path) -> list[str]:
    """Every miniature; the specs in the order written."""
    return [w(root) for w in (ucmerced, aid, rsicd, rsitmd, rsvqa_lr, rsvqa_hr, dior_rsvg, triplets, geo_table)]
