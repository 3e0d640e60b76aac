"""Training configuration: plain dataclasses loaded from YAML.

Relative paths are taken from the current directory (run commands from the repo
root); ``$VARS`` and ``~`` are expanded (``${GEOVEC_SHARED_DATA}`` defaults to
``../shared/data`` beside the repository). Unknown keys are refused, naming the
allowed ones, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from ..backend.errors import InputError, NotFoundError

PairType = Literal["scene_class", "region_caption", "image_image", "geo", "region"]
PAIR_TYPES: tuple[str, ...] = ("scene_class", "region_caption", "image_image", "geo", "region")


@dataclass
class LoraConfig:
    """LoRA through peft; ``enabled: false`` means full fine-tuning."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class RegionsConfig:
    """Region pairs (``data.pair_types`` with ``region``): see ``training/data/region_pairs.py``."""

    tile_size: int = 64  # native pixels of the tile a box is shown on (the index's --tile-size)
    tiles_per_feature: int = 4  # random tile placements holding each training feature
    grid: list[int] = field(default_factory=lambda: [1, 2, 3, 4])  # candidate grids, as `index --regions`
    overlap: float = 0.25
    match: Literal["cover", "iou"] = "cover"  # how a box takes a feature's class
    min_match: float = 0.5  # cover share or IoU a box needs to take a class
    feature_boxes: bool = True  # the features' own bounds are boxes too
    background: str | None = None  # text of boxes off every feature (None: such boxes are not used)
    max_background: float = 0.0  # a background box's most cover share (cover) or IoU with a feature (iou)
    pairs_per_tile: int = 8  # boxes kept per tile placement (at most half background)
    template: str = "{label}"  # referring expression of a class


@dataclass
class DataConfig:
    """A GeoTIFF scene + a labelled vector layer -> contrastive pairs."""

    raster: list[str] = field(default_factory=list)  # one multi-band file, or one-band files on one grid
    labels: str = ""  # GeoPackage / shapefile / GeoJSON, or a CSV of pixel boxes (xmin,ymin,xmax,ymax,label)
    label_field: str = "label"  # class or caption attribute
    layer: str | None = None  # layer name inside a GeoPackage
    bands: tuple[int, int, int] | None = None  # 1-based scene bands fed as R, G, B
    percentiles: tuple[float, float] = (2.0, 98.0)
    chip_size: int = 16  # native pixels around a labelled point (scene_class / image_image / geo)
    context_size: int = 64  # native pixels of the context window for region_caption
    image_size: int | None = None  # model input edge (chips and the model's image policy; saved with it); None = the preset's
    samples_per_class: int = 300  # training points drawn inside each class's polygons
    val_per_class: int = 60  # held-out points per class (balanced, so chance is ~1/classes)
    pair_types: list[str] = field(default_factory=lambda: ["scene_class"])
    caption_template: str = "a satellite image of {label}"
    block_size: int = 64  # spatial split block edge, native pixels
    val_fraction: float = 0.3  # validation blocks: for choices (steps, learning rate, ...)
    test_fraction: float = 0.0  # test blocks: the reported figure; 0 = no test split (figures are validation's)
    buffer: int = 8  # drop training (and validation) points closer than this (pixels) to a held-out point
    seed: int = 0
    regions: RegionsConfig = field(default_factory=RegionsConfig)  # region pairs (pair type ``region``)


@dataclass
class TrainConfig:
    """Optimisation settings."""

    steps: int = 200
    batch_size: int = 32  # pairs per step (global, before GradCache chunking)
    chunk_size: int = 32  # rows per forward; < batch_size turns GradCache on
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 10
    temperature: float = 0.02
    symmetric: bool = True
    hard_negatives: bool = False  # add a different-class image per pair as an extra negative
    max_grad_norm: float = 1.0
    bf16: bool | None = None  # None = on CUDA only
    gradient_checkpointing: bool | None = None  # None = on CUDA only
    device: str = "auto"
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    num_threads: int | None = None  # torch CPU threads; None = torch's default


@dataclass
class EvalConfig:
    """Before/after evaluation on the spatial hold-out."""

    before: bool = True
    after: bool = True
    batch_size: int = 32


@dataclass
class Config:
    """Everything ``geovec train`` needs."""

    model: str = "tiny"  # base model: local dir, preset name or hub id ("tiny" writes one)
    output_dir: str = "runs/train"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Config:
        p = Path(path)
        if not p.is_file():
            raise NotFoundError(f"config file not found: {p}", "pass the path of a YAML config")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise InputError(f"config {p} is not valid YAML: {e}", "fix the YAML syntax") from e
        if not isinstance(raw, dict):
            raise InputError(f"config {p} must be a mapping, got {type(raw).__name__}", "see training/configs/")
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        cfg = _build(cls, raw, "config")
        cfg.data.raster = [_path(x) for x in ([cfg.data.raster] if isinstance(cfg.data.raster, str) else cfg.data.raster)]
        cfg.data.labels = _path(cfg.data.labels) if cfg.data.labels else ""
        cfg.output_dir = _path(cfg.output_dir)
        if cfg.data.bands is not None:
            cfg.data.bands = tuple(int(b) for b in cfg.data.bands)  # type: ignore[assignment]
        cfg.data.percentiles = tuple(float(x) for x in cfg.data.percentiles)  # type: ignore[assignment]
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML types (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def validate(self) -> None:
        bad = [t for t in self.data.pair_types if t not in PAIR_TYPES]
        if bad or not self.data.pair_types:
            raise InputError(f"data.pair_types {self.data.pair_types} invalid", f"use some of {list(PAIR_TYPES)}")
        if not 0.0 < self.data.val_fraction < 1.0:
            raise InputError(f"data.val_fraction must be in (0, 1), got {self.data.val_fraction}", "e.g. 0.3")
        if not 0.0 <= self.data.test_fraction or self.data.val_fraction + self.data.test_fraction > 0.8:
            raise InputError(f"data.val_fraction {self.data.val_fraction} + data.test_fraction "
                             f"{self.data.test_fraction} out of range", "keep both >= 0 and their sum <= 0.8")
        for name in ("chip_size", "block_size", "samples_per_class", "val_per_class", "context_size"):
            if getattr(self.data, name) < 1:
                raise InputError(f"data.{name} must be >= 1, got {getattr(self.data, name)}", "use a positive integer")
        _validate_regions(self.data.regions)
        t = self.train
        if t.steps < 0 or t.batch_size < 2 or t.chunk_size < 1:
            raise InputError(
                f"train.steps={t.steps}, batch_size={t.batch_size}, chunk_size={t.chunk_size} out of range",
                "steps >= 0, batch_size >= 2 (in-batch negatives), chunk_size >= 1",
            )
        if not t.lr > 0 or not t.temperature > 0:
            raise InputError(f"train.lr={t.lr} and train.temperature={t.temperature} must be > 0", "e.g. 1e-4, 0.02")


def _validate_regions(r: RegionsConfig) -> None:
    if r.match not in ("cover", "iou"):
        raise InputError(f"regions.match {r.match!r} is not cover or iou", "cover for land-cover polygons, iou for objects")
    if not 0.0 < r.min_match <= 1.0 or not 0.0 <= r.max_background < 1.0 or not 0.0 <= r.overlap <= 0.9:
        raise InputError(f"regions.min_match={r.min_match}, max_background={r.max_background}, overlap={r.overlap} "
                         "out of range", "min_match in (0, 1], max_background in [0, 1), overlap in [0, 0.9]")
    if r.tile_size < 4 or r.tiles_per_feature < 1 or r.pairs_per_tile < 1 or not r.grid or \
            any(not 1 <= int(g) <= 16 for g in r.grid):
        raise InputError(f"regions.tile_size={r.tile_size}, tiles_per_feature={r.tiles_per_feature}, "
                         f"pairs_per_tile={r.pairs_per_tile}, grid={r.grid} out of range",
                         "tile_size >= 4, tiles_per_feature and pairs_per_tile >= 1, grid orders in 1..16")
    if r.background is not None and not str(r.background).strip():
        raise InputError("regions.background is empty", "give a text such as 'background', or leave it out")
    if "{label}" not in r.template and "{" in r.template.replace("{label}", ""):
        raise InputError(f"regions.template {r.template!r} has a placeholder other than {{label}}",
                         "use {label}, or a fixed text")


T = TypeVar("T")


#: ``${GEOVEC_SHARED_DATA}`` in configs defaults to the sample data beside the repository.
SHARED_DATA_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _path(value: str) -> str:
    text = str(value)
    if "GEOVEC_SHARED_DATA" in text and "GEOVEC_SHARED_DATA" not in os.environ:
        text = text.replace("${GEOVEC_SHARED_DATA}", str(SHARED_DATA_DEFAULT))
    return os.path.expanduser(os.path.expandvars(text))


def _build(cls: type[T], raw: dict[str, Any], where: str) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise InputError(f"unknown key(s) {unknown} in {where}", f"allowed: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    nested = {"data": DataConfig, "train": TrainConfig, "lora": LoraConfig, "eval": EvalConfig}
    for key, value in raw.items():
        if cls is DataConfig and key == "regions":
            if not isinstance(value, dict):
                raise InputError(f"{where}.{key} must be a mapping, got {value!r}", "indent its keys under it")
            kwargs[key] = _build(RegionsConfig, value, f"{where}.{key}")
        elif cls is Config and key in nested:
            if not isinstance(value, dict):
                raise InputError(f"{where}.{key} must be a mapping, got {value!r}", "indent its keys under it")
            kwargs[key] = _build(nested[key], value, f"{where}.{key}")
        else:
            kwargs[key] = value
    return cls(**kwargs)
