"""Reports: JSON, a markdown table, and matplotlib figures (task bars, training curves)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def read_log(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def plot_training_curves(log_path: str | Path, out_png: str | Path) -> Path | None:
    """Loss per step and held-out P@1 at each evaluation, from the training log."""
    rows = read_log(log_path)
    train = [r for r in rows if r.get("event") == "train"]
    evals = [r for r in rows if r.get("event") == "eval" and "p_at_1" in r]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].plot([r["step"] for r in train], [r["loss"] for r in train], marker=".")
    ax[0].set(xlabel="step", ylabel="InfoNCE loss", title="training loss")
    if evals:
        ax[1].plot([r["step"] for r in evals], [r["p_at_1"] for r in evals], marker="o")
        ax[1].axhline(evals[0].get("chance", 0), ls="--", c="grey", label="chance")
        ax[1].set(xlabel="step", ylabel="P@1", title="held-out class retrieval", ylim=(0, 1))
        ax[1].legend()
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_task_bars(results: dict[str, dict[str, Any]], out_png: str | Path, metric_keys: tuple[str, ...]) -> Path:
    """One bar per task (its headline metric), several series when comparing models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    values = [next((float(results[n][k]) for k in metric_keys if k in results[n]), 0.0) for n in names]
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(names)), 3.4))
    ax.bar(range(len(names)), values, color="#4c72b0")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set(ylim=(0, 1), ylabel="score", title="per-task headline metric")
    for i, v in enumerate(values):
        ax.text(i, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_train_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """report.json, report.md and figures for a training run (before/after P@1)."""
    out = Path(out_dir)
    files = {"json": out / "report.json", "md": out / "report.md"}
    files["json"].write_text(json.dumps(report, indent=2, default=str))
    before, after = report.get("before") or {}, report.get("after") or {}
    lines = ["# GeoVec training report", "", f"- base model: `{report.get('base_model')}`",
             f"- adapted model: `{report.get('model_dir')}`", f"- device: {report.get('device')}",
             f"- wall time: {report.get('wall_s', 0):.1f} s", "",
             f"## Held-out class retrieval ({report.get('reported_split', 'validation')} split, spatial blocks)", "",
             "| | P@1 | 95% CI (polygon bootstrap) | balanced P@1 | chance | chips | polygons |",
             "|---|---|---|---|---|---|---|"]
    for name, m in (("before", before), ("after", after), ("validation before", report.get("val_before") or {}),
                    ("validation after", report.get("val_after") or {})):
        if m:
            ci = m.get("p_at_1_ci95")
            lines.append(f"| {name} | {fmt(m['p_at_1'])} | {f'{ci[0]:.3f}-{ci[1]:.3f}' if ci else ''} "
                         f"| {fmt(m.get('balanced_p_at_1', float('nan')))} | {fmt(m['chance'])} | {m['n']} "
                         f"| {m.get('n_polygons', '')} |")
    if report.get("val_after"):
        lines += ["", "Validation blocks are for choices (steps, learning rate); the test blocks give the figure."]
    if before and after and before.get("p_at_1"):
        lines += ["", f"Gain: x{after['p_at_1'] / max(before['p_at_1'], 1e-9):.2f}"]
    if after.get("per_class"):
        lines += ["", "| class | before | after |", "|---|---|---|"]
        for c, v in after["per_class"].items():
            lines.append(f"| {c} | {fmt((before.get('per_class') or {}).get(c, float('nan')))} | {fmt(v)} |")
    split = report.get("split") or {}
    lines += ["", "## Split", "", "```", json.dumps(split, indent=1), "```"]
    curves = plot_training_curves(out / "train_log.jsonl", out / "figures" / "training_curves.png")
    if curves:
        files["curves"] = curves
        lines += ["", "![training curves](figures/training_curves.png)"]
    if before and after:
        files["bars"] = plot_task_bars({"before": before, "after": after}, out / "figures" / "before_after.png",
                                       ("p_at_1",))
        lines += ["", "![before/after](figures/before_after.png)"]
    files["md"].write_text("\n".join(lines) + "\n")
    return files
