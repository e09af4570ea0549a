"""The README lists what the repository ships: every chapter notebook and every checkpoint, with its command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_notebook_is_a_chapter_row():
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        row = next((line for line in README.splitlines() if f"`{notebook.name}`" in line), None)
        assert row is not None, f"README's chapter table has no row for {notebook.name}"
        assert "planned" not in row, f"README still calls {notebook.name} planned"


def test_every_shipped_checkpoint_has_a_row_with_its_command():
    for checkpoint in sorted((ROOT / "course_lib" / "checkpoints").glob("*.safetensors")):
        rows = [line for line in README.splitlines() if line.startswith(f"| `{checkpoint.name}`")]
        assert rows, f"README's checkpoint table has no row for {checkpoint.name}"
        assert re.search(
            rf"`python -m course_lib\.[\w.]+ .*--out course_lib/checkpoints/{checkpoint.name}`", rows[0]
        ), f"README's row for {checkpoint.name} does not give the command that writes it"


def test_tables_are_not_broken_by_blank_lines():
    lines = README.splitlines()
    for index in range(1, len(lines) - 1):
        if not lines[index].strip():
            assert not (lines[index - 1].startswith("|") and lines[index + 1].startswith("| `")), (
                f"a blank line at README line {index + 1} splits a table in two"
            )
