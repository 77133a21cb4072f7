"""Prints the README's configuration table from the Settings model."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config import Settings


def shown_default(name: str) -> str:
    """A setting's default as the table shows it: blank when there is none (None, empty list
    or mapping)."""
    default = Settings.model_fields[name].get_default(call_default_factory=True)
    return "" if default is None or default == [] or default == {} else str(default)


def table() -> str:
    """One markdown row per setting: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = shown_default(name)
        shown = f"`{default}`" if default else ""
        rows.append(f"| `{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(table() + "\n")
