"""The benchmark results file (DESIGN.md §6), bench/results/latest.json, and its markdown table."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent.parent / "bench" / "results"
KEYS = ("name", "ours", "baseline", "ratio", "unit", "goal", "met", "measured_at")


@dataclass
class Result:
    name: str
    ours: float
    baseline: float | None
    unit: str
    goal: str
    met: bool | None
    ratio: float | None = None
    measured_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        if self.ratio is None and self.baseline:
            self.ratio = round(self.ours / self.baseline, 3)


def save(new: list[Result], directory: Path = RESULTS) -> Path:
    """Merge ``new`` into latest.json by name (a partial run keeps the other figures)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "latest.json"
    existing = json.loads(path.read_text())["results"] if path.exists() else []
    by_name = {r["name"]: r for r in existing}
    by_name.update({r.name: {k: asdict(r)[k] for k in KEYS} for r in new})
    results = sorted(by_name.values(), key=lambda r: r["name"])
    path.write_text(json.dumps({"results": results}, indent=2, ensure_ascii=False) + "\n")
    (directory / "latest.md").write_text(table(results))
    return path


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def table(results: list[dict]) -> str:
    lines = [
        "| benchmark | ours | baseline | ratio | unit | goal | met | measured at |",
        "|---|---:|---:|---:|---|---|---|---|",
    ]
    for r in results:
        met = {True: "yes", False: "**no**", None: "n/a"}[r["met"]]
        base = "" if r["baseline"] is None else _num(r["baseline"])
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3g}"
        lines.append(
            f"| {r['name']} | {_num(r['ours'])} | {base} | {ratio} | {r['unit']} "
            f"| {r['goal']} | {met} | {r['measured_at']} |"
        )
    return "\n".join(lines) + "\n"
