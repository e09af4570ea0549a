"""The grading tools' parts (tools/course_grading): values across the sandbox, hidden checks, collection,
feedback, and the sandbox itself (an unprivileged kernel that sees none of the course's files).

The end-to-end run of the instructor's commands on hostile submissions is in test_assignments.py.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from course_grading import cli, feedback, hidden, sandbox, submissions, values
from course_grading import kernel as kernel_module
from course_grading.kernel import SandboxedKernel

ROOT = Path(__file__).resolve().parents[1]

SANDBOX_PROBLEM = sandbox.sandbox_problem()


# ------------------------------------------------------------------------------------------- values
def test_values_round_trip_keeps_types_shapes_and_specials():
    value = {
        "tensor": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "scalar": torch.tensor(1.5),
        "labels": torch.tensor([3, 1], dtype=torch.long),
        "mask": torch.tensor([True, False]),
        "empty": torch.zeros(0, 4),
        "array": np.ones((2, 2), dtype=np.float64),
        "numbers": [1, 2.5, float("nan"), float("inf"), None, True, "text"],
        "nested": ({"a": np.int64(3)}, torch.Size([4, 5])),
    }
    back = values.decode(values.encode(value))
    assert torch.equal(back["tensor"], value["tensor"]) and back["tensor"].dtype == torch.float32
    assert back["scalar"].shape == () and float(back["scalar"]) == 1.5
    assert back["labels"].dtype == torch.int64 and back["mask"].dtype == torch.bool
    assert back["empty"].shape == (0, 4)
    assert isinstance(back["array"], np.ndarray) and back["array"].shape == (2, 2)
    assert back["numbers"][:2] == [1, 2.5] and math.isnan(back["numbers"][2]) and back["numbers"][3] == math.inf
    assert back["numbers"][4:] == [None, True, "text"]
    assert back["nested"] == [{"a": 3}, [4, 5]]


def test_values_refuse_objects_and_object_arrays():
    class Model:
        pass

    for bad in (Model(), np.array([object()], dtype=object), {1: "not a string key"}, lambda: 0):
        with pytest.raises(values.ValueTransportError):
            values.encode(bad)


def test_decode_checks_everything_a_hostile_kernel_could_send():
    good = json.loads(values.encode(torch.ones(2, 2)))
    malformed = [
        "not json",
        json.dumps({**good, "shape": [3, 3]}),  # size does not match the shape
        json.dumps({**good, "dtype": "object"}),
        json.dumps({**good, "shape": [-1]}),
        json.dumps({**good, "__array__": "%%%"}),  # not base64
        json.dumps({"__reduce__": "os.system"}),  # no pickle, no objects
        "[" * 5000 + "]" * 5000,  # deeper than the JSON parser or MAX_DEPTH allows
    ]
    for text in malformed:
        with pytest.raises(values.ValueTransportError):
            values.decode(text)


def test_kernel_side_call_reports_errors_and_missing_names_as_data():
    namespace = {"double": lambda x: 2 * x, "broken": lambda: 1 / 0, "number": 3}
    ok = json.loads(values.kernel_call(namespace, "double", values.encode(([torch.tensor([1.0])], {}))))
    assert values.decode(ok["value"]).tolist() == [2.0]
    assert (
        json.loads(values.kernel_call(namespace, "broken", values.encode(([], {}))))["error"]["type"]
        == "ZeroDivisionError"
    )
    assert json.loads(values.kernel_call(namespace, "absent", values.encode(([], {})))) == {"missing": "absent"}
    assert "not_callable" in json.loads(values.kernel_call(namespace, "number", values.encode(([], {}))))
    answer = json.loads(values.kernel_evaluate(namespace, "y = number + 1\ny * 2"))
    assert values.decode(answer["value"]) == 8


# ------------------------------------------------------------------------------------------- hidden
def test_split_hidden_separates_the_regions_and_rejects_broken_markers():
    source = "a = 1\n### BEGIN HIDDEN TESTS\nassert x\n### END HIDDEN TESTS\nprint(a)"
    assert hidden.split_hidden(source) == ("a = 1\nprint(a)", "assert x")
    for broken in (
        "### BEGIN HIDDEN TESTS\nx",
        "### END HIDDEN TESTS",
        "### BEGIN HIDDEN TESTS\n### BEGIN HIDDEN TESTS",
    ):
        with pytest.raises(ValueError):
            hidden.split_hidden(broken)


class FakeKernel:
    """Answers the way SandboxedKernel.call does, from a table."""

    def __init__(self, answers):
        self.answers = answers

    def call(self, name, args, kwargs, timeout):
        return self.answers[name]

    def evaluate(self, code, timeout):
        return self.answers["evaluate"]


def test_hidden_checks_turn_every_kernel_answer_into_a_verdict():
    kernel = FakeKernel(
        {
            "right": {"value": torch.tensor([1.0, 2.0])},
            "wrong": {"value": torch.tensor([1.0, 2.5])},
            "raises": {"error": {"type": "ValueError", "message": "bad shape"}},
            "absent": {"missing": "absent"},
            "slow": {"timeout": 7.0},
            "garbage": {"garbled": "nonsense"},
        }
    )
    namespace = hidden.hidden_namespace(hidden.Student(kernel, 10.0, lambda: 100.0))
    check = "assert close(student.{}(), torch.tensor([1.0, 2.0])), 'values differ'"
    assert hidden.run_hidden(check.format("right"), namespace, "q").passed
    verdicts = {
        name: hidden.run_hidden(check.format(name), namespace, "q") for name in kernel.answers if name != "right"
    }
    assert not any(v.passed for v in verdicts.values())
    assert verdicts["wrong"].message == "values differ"
    assert verdicts["raises"].message == "`raises` raised ValueError: bad shape"
    assert "not defined in the notebook" in verdicts["absent"].message
    assert "did not return within 7 s" in verdicts["slow"].message
    assert "could not read" in verdicts["garbage"].message
    out_of_time = hidden.hidden_namespace(hidden.Student(kernel, 10.0, lambda: 0.0))
    assert "time limit" in hidden.run_hidden(check.format("right"), out_of_time, "q").message


def test_close_and_difference_compare_shapes_and_values():
    assert hidden.close(torch.ones(3), np.ones(3)) and not hidden.close(torch.ones(3), torch.ones(1, 3))
    assert not hidden.close(torch.tensor([float("nan")]), torch.tensor([float("nan")]))
    assert not hidden.close("text", torch.ones(1))
    assert hidden.difference(torch.ones(1), torch.ones(())) == "shape (1,) instead of ()"
    assert hidden.difference(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 2.0])) == "largest difference 1"


# ------------------------------------------------------------------------------------------ collect
def _released() -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "assignments" / "release" / "01_codebooks" / "01_codebooks.ipynb", as_version=4)


def test_collect_records_every_problem_and_grades_nothing_it_should_not(tmp_path, monkeypatch):
    released = _released()
    folder, course = tmp_path / "hand-ins", tmp_path / "course"
    secret = tmp_path / "secret.ipynb"
    nbformat.write(released, secret)
    (folder / "good").mkdir(parents=True)
    forged = nbformat.from_dict(json.loads(nbformat.writes(released)))
    forged.cells = [c for c in forged.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_bitrate"]
    forged.cells.append(
        nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade": True, "grade_id": "bonus", "points": 99}})
    )
    forged.metadata["course_grading"] = {"verdicts": {"test_bitrate": {"passed": True}}}
    nbformat.write(forged, folder / "good" / "01_codebooks.ipynb")
    (folder / "linked").mkdir()
    os.symlink(secret, folder / "linked" / "01_codebooks.ipynb")
    (folder / "broken").mkdir()
    (folder / "broken" / "01_codebooks.ipynb").write_text('{"cells": [')
    (folder / "renamed").mkdir()
    nbformat.write(released, folder / "renamed" / "01_codebooks (1).ipynb")
    (folder / "empty").mkdir()
    (folder / "big").mkdir()
    limit = (folder / "good" / "01_codebooks.ipynb").stat().st_size + 1000
    (folder / "big" / "01_codebooks.ipynb").write_text(" " * (limit + 1))
    (folder / "..hidden id").mkdir()
    monkeypatch.setattr(submissions, "MAX_NOTEBOOK_BYTES", limit)
    report = submissions.collect(course, "01_codebooks", folder, {"01_codebooks": released})

    kinds = {s.student: [p.kind for p in s.problems] for s in report.students}
    assert kinds == {
        "good": [],
        "linked": ["not_a_file"],
        "broken": ["invalid_json"],
        "renamed": ["renamed"],
        "empty": ["missing"],
        "big": ["too_large"],
    }
    assert report.skipped == ["..hidden id"]
    collected = sorted(p.relative_to(course / "submitted") for p in (course / "submitted").rglob("*.ipynb"))
    assert collected == [Path("good/01_codebooks/01_codebooks.ipynb")], "only the valid notebook may reach nbgrader"
    graded = nbformat.read(course / "submitted" / "good" / "01_codebooks" / "01_codebooks.ipynb", as_version=4)
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in graded.cells]
    assert "test_bitrate" in ids, "a deleted test cell is put back"
    assert ids.index("test_bitrate") == ids.index("bitrate") + 1, "right after the answer it tests"
    assert "bonus" not in ids and "course_grading" not in graded.metadata
    assert submissions.read_problems(course, "01_codebooks", "good", "notices")[0].kind == "restored_cells"
    assert "found 01_codebooks (1).ipynb" in submissions.read_problems(course, "01_codebooks", "renamed")[0].message


def test_collect_puts_back_the_released_grading_metadata_of_every_known_cell(tmp_path):
    """A flipped flag on a test cell made nbgrader fail the notebook ("Inconsistent checksums"): 0 points (#16)."""
    released = _released()
    forged = nbformat.from_dict(json.loads(nbformat.writes(released)))
    meta = {
        c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"] for c in forged.cells if "nbgrader" in c.metadata
    }
    meta["test_kmeans"]["solution"] = True
    meta["test_bitrate"]["grade"] = False
    meta["test_vq_vae_loss"]["points"] = 100
    meta["kmeans"]["grade"], meta["kmeans"]["points"] = True, 50  # an answer cell made a test cell
    (tmp_path / "hand-ins" / "flags").mkdir(parents=True)
    nbformat.write(forged, tmp_path / "hand-ins" / "flags" / "a.ipynb")
    submissions.collect(tmp_path / "course", "a", tmp_path / "hand-ins", {"a": released})

    graded = nbformat.read(tmp_path / "course" / "submitted" / "flags" / "a" / "a.ipynb", as_version=4)
    assert [c.metadata.get("nbgrader") for c in graded.cells] == [c.metadata.get("nbgrader") for c in released.cells]
    (notice,) = submissions.read_problems(tmp_path / "course", "a", "flags", "notices")
    assert (
        notice.kind == "restored_metadata" and "kmeans, test_kmeans, test_bitrate, test_vq_vae_loss" in notice.message
    )


def test_release_refuses_a_test_cell_without_hidden_checks(tmp_path):
    (tmp_path / "source" / "a").mkdir(parents=True)
    (tmp_path / "nbgrader_config.py").write_text("")
    cell = nbformat.v4.new_code_cell(
        "assert f() == 1", metadata={"nbgrader": {"grade": True, "grade_id": "t", "points": 1}}
    )
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), tmp_path / "source" / "a" / "a.ipynb")
    with pytest.raises(cli.GradingError, match="no '### BEGIN HIDDEN TESTS' region"):
        cli.check_source(cli.Course(tmp_path), "a")


def test_the_course_folder_is_the_current_one_or_its_assignments(tmp_path, monkeypatch):
    """`course-grade` run in the repository's root grades assignments/; run in a course folder, that folder."""
    monkeypatch.chdir(ROOT)
    assert cli.default_course() == ROOT / "assignments"
    monkeypatch.chdir(ROOT / "assignments")
    assert cli.default_course() == ROOT / "assignments"
    monkeypatch.chdir(tmp_path)
    assert cli.main(["doctor"]) == 2, "no course folder here: a course error, not a traceback"


# ----------------------------------------------------------------------------------------- feedback
def test_feedback_keeps_no_html_or_script_from_the_submission():
    html_output = nbformat.v4.new_output(
        "display_data", data={"text/html": "<script>steal()</script>", "text/plain": "x"}
    )
    assert feedback._safe_output(html_output)["data"] == {"text/plain": "x"}
    assert feedback._safe_output(nbformat.v4.new_output("display_data", data={"application/javascript": "x"})) is None
    info = {"assignment": "a", "notebook": "n", "score": 1.0, "max_score": 2.0}
    report = {"events": [{"message": "<img src=x onerror=alert(1)>"}], "verdicts": {}}
    markdown = feedback._report_markdown(info, [("q|1", 1.0, 2.0, "<b>bold</b>")], report)
    assert "<img" not in markdown and "<b>" not in markdown and "&lt;img" in markdown


def test_problem_page_escapes_what_the_student_named(tmp_path):
    page = feedback.write_problem_page(tmp_path / "p.html", "s", "a", "n", "found <script>x</script>.ipynb", 13)
    text = page.read_text()
    assert "<script>" not in text and "0 of 13 points" in text


# ------------------------------------------------------------------------------------------ sandbox
@pytest.mark.skipif(SANDBOX_PROBLEM is not None, reason=f"grading sandbox unavailable: {SANDBOX_PROBLEM}")
def test_sandboxed_kernel_is_unprivileged_blind_offline_and_stoppable(monkeypatch):
    monkeypatch.setenv("GRADER_SECRET", "do-not-leak")
    paths = [str(ROOT / "assignments" / "source"), str(ROOT / "tests"), str(ROOT / "course_lib" / "evil.py")]
    probe = (
        f"paths = {paths!r}\n"
        + r"""
import json, os, socket
seen = {"uid": os.getuid(), "groups": os.getgroups(), "cwd": os.getcwd(), "secret": os.environ.get("GRADER_SECRET")}
seen["course"] = os.path.exists(paths[0])
seen["tests"] = os.path.exists(paths[1])
seen["processes"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
for name, action in {"library": lambda: open(paths[2], "w"), "usr": lambda: open("/usr/x", "w"),
                     "network": lambda: socket.create_connection(("1.1.1.1", 53), timeout=2)}.items():
    try:
        action()
        seen[name] = "allowed"
    except OSError as error:
        seen[name] = type(error).__name__
print(json.dumps(seen))
"""
    )
    kernel = SandboxedKernel()
    kernel.start()
    try:
        result = kernel.execute(probe, timeout=60)
        assert result.status == "ok", result.error
        seen = json.loads(result.outputs[0]["text"])
        assert seen["uid"] == sandbox.NOBODY and seen["groups"] == [] and seen["cwd"] == sandbox.WORK_DIR
        assert seen["secret"] is None, "the grader's environment reached the kernel"
        assert not seen["course"] and not seen["tests"], "the kernel sees the course's files"
        assert len(seen["processes"]) == 2, f"the kernel sees processes outside its sandbox: {seen['processes']}"
        assert seen["library"] != "allowed" and seen["usr"] != "allowed" and seen["network"] != "allowed"

        loop = kernel.execute("while True:\n    pass", timeout=3)
        assert loop.status == "timeout"
        after = kernel.execute("print('alive')", timeout=30)
        assert after.status == "ok" and after.outputs[0]["text"] == "alive\n", "an interrupt keeps the kernel"

        flood = kernel.execute("for _ in range(2000):\n    print('x' * 10_000)", timeout=60)
        assert flood.dropped_chars > 10_000_000 and sum(len(o.get("text", "")) for o in flood.outputs) < 30_000

        stubborn = kernel.execute(
            "import time\nwhile True:\n    try:\n        time.sleep(0.1)\n    except KeyboardInterrupt:\n        pass",
            timeout=3,
        )
        assert stubborn.status == "lost" and not kernel.alive(), "a kernel that ignores interrupts is killed"

        # One message larger than the grader accepts disconnects the kernel (the grader never holds it).
        monkeypatch.setattr(kernel_module, "MAX_MESSAGE_BYTES", 2**20)
        kernel.restart()
        huge = kernel.execute("import sys\nsys.stdout.write('x' * 5_000_000)\nsys.stdout.flush()", timeout=4)
        assert huge.status != "ok" and not huge.outputs

        kernel.restart()
        sandbox_processes = kernel_module.descendants(kernel.km.provisioner.pid)
        assert len(sandbox_processes) >= 2, "the sandbox's init and the kernel run under unshare"
    finally:
        kernel.shutdown()
    alive = [pid for pid in sandbox_processes if kernel_module.running(pid)]
    assert not alive, f"processes of the sandbox outlived its kernel: {alive}"
