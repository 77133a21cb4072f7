"""The benchmark's table writer: verdicts, per-device sections, the README block."""

from __future__ import annotations

from pathlib import Path

from bench.report import README_END, README_START, Report, Row, Target, markdown, update_readme


def report(device: str) -> Report:
    result = Report(context={"device": device, "model": "tiny.en", "date": "today"})
    result.add(Row("scaling", "two workers", "jobs/s", 1.8, 1.0, "one", Target("min", 1.6)))
    result.add(Row("overhead", "jfk", "s", 0.72, 0.6, "direct call", Target("max", 1.1)))
    result.add(Row("uploads", "rss growth", "MiB", 3.0, target=Target("max", 64, on_service=True)))
    return result


def test_rows_carry_ratio_verdict_and_issue_order() -> None:
    text = markdown(report("cpu"))
    lines = [line for line in text.splitlines() if line.startswith("| ") and "|---" not in line]
    rows = [
        line for line in lines if line.split("|")[1].strip() in {"overhead", "uploads", "scaling"}
    ]
    assert [row.split("|")[1].strip() for row in rows] == ["overhead", "uploads", "scaling"]
    assert "| 1.200 | ≤ 1.10 | **no** |" in rows[0]
    assert "| ≤ 64.0 MiB | yes |" in rows[1]
    assert "| 1.800 | ≥ 1.60 | yes |" in rows[2]


def test_a_run_replaces_only_its_own_device_section() -> None:
    gpu = markdown(report("cuda"))
    both = markdown(report("cpu"), previous=gpu)
    assert "## GPU: tiny.en" in both
    assert "## CPU: tiny.en" in both
    assert "No CPU run recorded yet" in gpu
    assert "No CPU run recorded yet" not in both


def test_readme_block_is_replaced_between_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{README_START}\nold\n{README_END}\n\n## After\n")
    assert update_readme(readme, report("cpu"))
    text = readme.read_text()
    assert "old" not in text
    assert text.startswith("# Title")
    assert text.endswith("## After\n")
    assert "| overhead | jfk |" in text
    # The README's configuration-table test reads rows that start with a backtick.
    assert not any(line.startswith("| `") for line in text.splitlines())


def test_readme_without_markers_is_left_alone(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n")
    assert not update_readme(readme, report("cpu"))
    assert readme.read_text() == "# Title\n"
