"""The benchmark's results: rows of (measure, service, reference, ratio, target), as markdown."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"

Goal = Literal["max", "min"]
"""`max`: the ratio must not exceed the target; `min`: it must reach it."""


@dataclass(frozen=True)
class Target:
    """A bound on a row's ratio (or, with `on_service`, on its service figure)."""

    goal: Goal
    bound: float
    on_service: bool = False

    def met(self, value: float) -> bool:
        """Whether `value` is within the bound."""
        return value <= self.bound if self.goal == "max" else value >= self.bound

    def describe(self, unit: str) -> str:
        sign = "≤" if self.goal == "max" else "≥"
        return f"{sign} {_number(self.bound)}{f' {unit}' if self.on_service and unit else ''}"


@dataclass(frozen=True)
class Row:
    """One measure: the service's figure beside its reference, in the same unit."""

    part: str
    measure: str
    unit: str
    service: float | None
    reference: float | None = None
    reference_label: str = ""
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """service / reference, when both exist and the reference is not zero."""
        if self.service is None or not self.reference:
            return None
        return self.service / self.reference

    @property
    def met(self) -> bool | None:
        """Whether the target is met; None without a target or a figure to judge."""
        if self.target is None:
            return None
        value = self.service if self.target.on_service else self.ratio
        return None if value is None else self.target.met(value)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = None if self.target is None else asdict(self.target)
        data["ratio"] = self.ratio
        data["met"] = self.met
        return data


@dataclass
class Report:
    """Everything one run measured, with the conditions it ran under."""

    context: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row


def _number(value: float) -> str:
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{_number(value)} {unit}".strip()


def table(rows: list[Row]) -> str:
    """The rows as a markdown table (measure, service, reference, ratio, target, met?)."""
    lines = [
        "| part | measure | service | reference | ratio | target | met? |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        reference = _figure(row.reference, row.unit)
        if row.reference_label and row.reference is not None:
            reference = f"{reference} ({row.reference_label})"
        ratio = "—" if row.ratio is None else f"{row.ratio:.3f}"
        target = "—" if row.target is None else row.target.describe(row.unit)
        met = {True: "yes", False: "**no**", None: "—"}[row.met]
        measure = row.measure + (f" ({row.note})" if row.note else "")
        lines.append(
            f"| {row.part} | {measure} | {_figure(row.service, row.unit)} | {reference} | "
            f"{ratio} | {target} | {met} |"
        )
    return "\n".join(lines)


PART_ORDER = ("overhead", "warm models", "uploads", "API", "scaling", "events", "diarization")
"""Table order: the issue's parts 1 to 5 (part 6 is the same table from a GPU run), then live
events (issue 14), then speakers (issue 17)."""

HEADER = """# Benchmarks

Written by `make bench` (`python -m bench`; `--device cuda --model large-v3` on a GPU machine).
Each figure is measured beside its reference in the same run on the same machine, so the ratios
are what to read; absolute times are context only. A run replaces its own device's section.
"""

PLACEHOLDERS = {
    "cpu": "No CPU run recorded yet: `make bench`.",
    "cuda": "No GPU run recorded yet: `python -m bench --device cuda` on a machine with a GPU.",
}


def ordered(rows: list[Row]) -> list[Row]:
    """Rows by part (issue order), keeping the run's order within a part."""
    rank = {part: index for index, part in enumerate(PART_ORDER)}
    return sorted(rows, key=lambda row: rank.get(row.part, len(rank)))


def _markers(device: str) -> tuple[str, str]:
    return f"<!-- bench:{device}:start -->", f"<!-- bench:{device}:end -->"


def section(report: Report) -> str:
    """One device's section of BENCHMARKS.md: conditions, table, findings."""
    context = report.context
    device = str(context.get("device", "cpu"))
    start, end = _markers(device)
    lines = [
        start,
        f"## {'GPU' if device == 'cuda' else 'CPU'}: {context.get('model', '?')}",
        "",
        "| condition | value |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in context.items()),
        "",
        table(ordered(report.rows)),
        "",
    ]
    if report.findings:
        lines += ["Findings:", "", *(f"- {finding}" for finding in report.findings), ""]
    lines += [f"Every run and breakdown: `bench-results/results-{device}.json`.", end]
    return "\n".join(lines)


def markdown(report: Report, previous: str | None = None) -> str:
    """BENCHMARKS.md with this run's section, other devices' sections kept from `previous`."""
    device = str(report.context.get("device", "cpu"))
    parts = [HEADER]
    for name in ("cpu", "cuda"):
        start, end = _markers(name)
        if name == device:
            parts.append(section(report))
            continue
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
        found = pattern.search(previous or "")
        parts.append(found.group(0) if found else f"{start}\n{PLACEHOLDERS[name]}\n{end}")
    return "\n".join(parts) + "\n"


def write_json(report: Report, path: Path) -> None:
    """The run as JSON: context, rows (with ratio and verdict), findings and every detail."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "context": report.context,
        "rows": [row.as_json() for row in ordered(report.rows)],
        "findings": report.findings,
        "details": report.details,
    }
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def write(report: Report, benchmarks_md: Path, results_dir: Path) -> Path:
    """Write BENCHMARKS.md and `results.json` (also kept as `results-<device>.json`)."""
    previous = benchmarks_md.read_text() if benchmarks_md.exists() else None
    benchmarks_md.write_text(markdown(report, previous))
    device = str(report.context.get("device", "cpu"))
    write_json(report, results_dir / f"results-{device}.json")
    latest = results_dir / "results.json"
    write_json(report, latest)
    return latest


def update_readme(readme: Path, report: Report) -> bool:
    """Put the table between the README's bench markers; False when the markers are missing."""
    text = readme.read_text()
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.DOTALL)
    if not pattern.search(text):
        return False
    context = report.context
    block = "\n".join(
        [
            README_START,
            f"Last run: {context.get('date', '?')} on {context.get('machine', '?')}, "
            f"device {context.get('device', '?')}, model {context.get('model', '?')}"
            f"{' (quick run)' if context.get('quick') else ''}.",
            "",
            table(ordered(report.rows)),
            "",
            "Both devices' tables, with conditions and findings: [BENCHMARKS.md](BENCHMARKS.md).",
            README_END,
        ]
    )
    readme.write_text(pattern.sub(lambda _: block, text, count=1))
    return True
