"""The benchmark suite's contract (benchmarks/suite.py): every script gives it rows, and the table shows them."""

import ast
import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _suite():
    spec = importlib.util.spec_from_file_location("suite", BENCHMARKS / "suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("bench_*.py")), ids=lambda path: path.stem)
def test_every_benchmark_defines_ratio_rows(path):
    tree = ast.parse(path.read_text())
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "ratio_rows" in functions, f"{path.name} has no ratio_rows(quick): make bench would list it as failed"
    assert [arg.arg for arg in functions["ratio_rows"].args.args] == ["quick"]


def test_table_shows_ratios_goals_and_skipped_rows():
    suite = _suite()
    results = {
        "machine": {"cpu": "test CPU", "cores": 2, "device": "cpu", "gpu": None, "torch": "x", "date": "today"},
        "quick": False,
        "rows": [
            {"benchmark": "fast thing vs peer", "ratio": 12.345, "goal": "≥ 10×", "met": True, "detail": "a vs b"},
            {"benchmark": "slow thing vs peer", "ratio": 0.5, "goal": "≥ 1.3×", "met": False, "detail": "c vs d"},
            {"benchmark": "missing peer", "skipped": "No module named 'peer'"},
            {"benchmark": "|x| / y", "ratio": 0.1, "goal": None, "met": None, "detail": "a|b"},
        ],
    }
    table = suite.format_table(results)
    assert "| fast thing vs peer | 12.35× | ≥ 10× | yes | a vs b |" in table
    assert "| slow thing vs peer | 0.50× | ≥ 1.3× | **no** | c vs d |" in table
    assert "| missing peer | — | — | skipped | No module named 'peer' |" in table
    assert "| \\|x\\| / y | 0.10× | — | — | a\\|b |" in table  # pipes escaped: the row keeps 5 cells


def test_a_failing_benchmark_becomes_a_row_that_says_why(tmp_path, monkeypatch):
    suite = _suite()
    (tmp_path / "bench_broken.py").write_text("def ratio_rows(quick):\n    raise RuntimeError('no luck')\n")
    (tmp_path / "bench_fine.py").write_text(
        "def ratio_rows(quick):\n"
        "    return [{'benchmark': 'b', 'ratio': 2.0, 'goal': None, 'met': None, 'detail': str(quick)}]\n"
    )
    monkeypatch.setattr(suite, "HERE", tmp_path)
    rows = suite.run(quick=True)["rows"]
    assert rows[0]["benchmark"] == "broken" and "RuntimeError: no luck" in rows[0]["skipped"]
    assert rows[1]["ratio"] == 2.0 and rows[1]["detail"] == "True" and rows[1]["script"] == "bench_fine.py"
