"""Dataset layouts as distributed: class names, image folders, split files, spec syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

from geovec.backend.errors import InputError, NotFoundError
from geovec.training.data import layouts
from geovec.training.eval.harness import parse_spec

from . import miniatures


@pytest.mark.parametrize(("folder", "readable"), [
    ("denseresidential", "dense residential"), ("mobilehomepark", "mobile home park"), ("beach", "beach"),
    ("DenseResidential", "dense residential"), ("BareLand", "bare land"), ("RailwayStation", "railway station"),
    ("storage_tanks", "storage tanks"), ("Expressway-Service-area", "expressway service area")])
def test_class_folder_names_become_words(folder: str, readable: str) -> None:
    assert layouts.readable_class(folder) == readable


def test_scene_folders_ucmerced_and_aid(tmp_path: Path) -> None:
    miniatures.ucmerced(tmp_path)
    miniatures.aid(tmp_path)
    ucm = layouts.load_scene_classes(tmp_path / "UCMerced_LandUse")  # the archive's top folder: Images/ inside
    assert sorted({s.label for s in ucm}) == ["beach", "dense residential", "forest"] and len(ucm) == 6
    assert layouts.load_scene_classes(tmp_path / "UCMerced_LandUse" / "Images") == ucm
    aid = layouts.load_scene_classes(tmp_path / "AID")
    assert [Path(s.path).name for s in aid][:2] == ["bareland_1.jpg", "bareland_2.jpg"] and aid[0].label == "bare land"
    with pytest.raises(InputError, match="class sub-folders"):
        layouts.load_scene_classes(tmp_path / "AID" / "Pond")
    with pytest.raises(NotFoundError):
        layouts.load_scene_classes(tmp_path / "missing")


def test_caption_json_finds_its_image_folder_and_split(tmp_path: Path) -> None:
    miniatures.rsicd(tmp_path)
    miniatures.rsitmd(tmp_path)
    got = layouts.load_caption_dataset(tmp_path / "RSICD" / "dataset_rsicd.json")
    assert [Path(s.path).parent.name for s in got] == ["RSICD_images"] * 3 and all(Path(s.path).is_file() for s in got)
    assert len(layouts.load_caption_dataset(tmp_path / "RSICD", split="train")) == 2  # the folder: its one JSON
    tm = layouts.load_caption_dataset(tmp_path / "RSITMD" / "dataset_RSITMD.json")
    assert [Path(s.path).relative_to(tmp_path).as_posix() for s in tm] == ["RSITMD/images/beach_10.tif",
                                                                           "RSITMD/images/water_11.tif"]
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert layouts.load_caption_dataset(tmp_path / "RSITMD" / "dataset_RSITMD.json", other)[0].path == \
        str(other / "beach_10.tif")
    with pytest.raises(InputError, match=r"no images in split 'val' \(splits: \['test', 'train'\]\)"):
        layouts.load_caption_dataset(tmp_path / "RSICD" / "dataset_rsicd.json", split="val")
    (tmp_path / "RSITMD" / "images" / "beach_10.tif").unlink()
    with pytest.raises(NotFoundError, match="JSON:IMAGES"):
        layouts.load_caption_dataset(tmp_path / "RSITMD" / "dataset_RSITMD.json")


def test_rsvqa_low_and_high_resolution(tmp_path: Path) -> None:
    miniatures.rsvqa_lr(tmp_path)
    miniatures.rsvqa_hr(tmp_path)
    lr = layouts.load_rsvqa_dataset(tmp_path / "RSVQA_LR")
    assert [(Path(s.path).relative_to(tmp_path).as_posix(), s.qtype) for s in lr][:2] == [
        ("RSVQA_LR/Images_LR/2.tif", "presence"), ("RSVQA_LR/Images_LR/2.tif", "count")]
    assert len(lr) == 4 and lr[0].answer == "no" and lr[1].answer == "2"
    hr = layouts.load_rsvqa_dataset(tmp_path / "RSVQA_HR")
    assert len(hr) == 6 and Path(hr[0].path).parent.name == "Data"
    phili = layouts.load_rsvqa_dataset(tmp_path / "RSVQA_HR", split="test_phili")
    assert [Path(s.path).name for s in phili] == ["3.tif", "3.tif"]
    with pytest.raises(NotFoundError, match=r"splits: \['test', 'test_phili'\]"):
        layouts.load_rsvqa_dataset(tmp_path / "RSVQA_HR", split="train")


def test_dior_rsvg_split_files_index_objects_in_file_order(tmp_path: Path) -> None:
    miniatures.dior_rsvg(tmp_path)
    test = layouts.load_rsvg_dataset(tmp_path / "DIOR_RSVG")
    assert [(Path(s.path).name, s.category, s.bbox) for s in test] == [
        ("00001.jpg", "storagetank", (30.0, 4.0, 40.0, 20.0)), ("00002.jpg", "vehicle", (5.0, 4.0, 15.0, 20.0)),
        ("00002.jpg", "bridge", (20.0, 4.0, 30.0, 20.0))]
    assert [s.expression for s in layouts.load_rsvg_dataset(tmp_path / "DIOR_RSVG" / "Annotations", split="train")] \
        == ["the ship at x 2"]
    with pytest.raises(NotFoundError, match="no val.txt"):
        layouts.load_rsvg_dataset(tmp_path / "DIOR_RSVG", split="val")


@pytest.mark.parametrize(("spec", "parsed"), [
    ("vqa=/data/RSVQA_HR", ("vqa", "/data/RSVQA_HR", None)),
    ("cross_modal_retrieval=/d/dataset_rsicd.json:/d/RSICD_images", ("cross_modal_retrieval", "/d/dataset_rsicd.json",
                                                                      "/d/RSICD_images")),
    (r"grounding=C:\data\DIOR_RSVG", ("grounding", r"C:\data\DIOR_RSVG", None)),
    (r"grounding=C:\data\DIOR_RSVG:D:\jpg", ("grounding", r"C:\data\DIOR_RSVG", r"D:\jpg")),
    ("scene_classification=/a:b", ("scene_classification", "/a:b", None)),
])
def test_spec_syntax(spec: str, parsed: tuple[str, str, str | None]) -> None:
    assert parse_spec(spec) == parsed
