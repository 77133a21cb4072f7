"""The README's configuration table names every setting, with its default."""

from __future__ import annotations

from config import Settings
from scripts.config_table import shown_default
from tests.audio import REPO_ROOT


def test_every_setting_is_documented_with_its_default() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {
        line.split("|")[1].strip().strip("`"): line.split("|")[2].strip().strip("`")
        for line in section.splitlines()
        if line.startswith("| `")
    }
    for name in Settings.model_fields:
        variable = name.upper()
        assert variable in rows, f"{variable} is missing from the README's configuration table"
        assert rows[variable] == shown_default(name), variable
