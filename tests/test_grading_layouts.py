"""The grading sandbox in every installation layout, and the canary that keeps the grader's failures off students.

Issue #23: with the environment reached through a symbolic link, the sandbox mounted the resolved
paths and started the kernel by the unresolved one, which did not exist inside: every student got
0 ("its cell was not run") and nothing told the instructor. Here: the paths the kernel is started
with and sees, per layout (a symlinked venv, a venv in a symlinked folder, a regular install with
its dependencies in the user's site-packages); ``doctor``; and a broken environment stopping
``autograde`` with a course error before any grade is recorded. The symlinked environment in
folders with spaces and non-ASCII names is graded end to end in test_assignments.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
from course_grading import cli, sandbox

ROOT = Path(__file__).resolve().parents[1]
SANDBOX_PROBLEM = sandbox.sandbox_problem()
needs_sandbox = pytest.mark.skipif(
    SANDBOX_PROBLEM is not None, reason=f"grading sandbox unavailable: {SANDBOX_PROBLEM}"
)
ENVIRONMENT = Path(sys.prefix).resolve()


def _pretend_interpreter(monkeypatch: pytest.MonkeyPatch, prefix: Path) -> None:
    """Make this process look as if it ran ``prefix/bin/python`` (what a linked layout gives)."""
    monkeypatch.setattr(sys, "executable", str(prefix / "bin" / Path(sys.executable).name))
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setattr(sys, "exec_prefix", str(prefix))


@pytest.mark.parametrize("layout", ["linked venv", "venv in a linked folder"])
def test_the_kernel_starts_by_a_path_the_sandbox_shows(layout, tmp_path, monkeypatch):
    if layout == "linked venv":  # .venv -> /elsewhere/venv
        (tmp_path / "course é").mkdir()
        prefix = tmp_path / "course é" / ".venv"
        prefix.symlink_to(ENVIRONMENT, target_is_directory=True)
    else:  # /home/me/linked -> /data/real, the venv inside it
        (tmp_path / "real").mkdir()
        (tmp_path / "real" / "venv").symlink_to(ENVIRONMENT, target_is_directory=True)
        (tmp_path / "linked dir").symlink_to(tmp_path / "real", target_is_directory=True)
        prefix = tmp_path / "linked dir" / "venv"
    _pretend_interpreter(monkeypatch, prefix)

    read_only = sandbox.read_only_paths()
    aliases = sandbox.alias_paths(read_only)
    python = sandbox.kernel_python()
    assert python == str(ENVIRONMENT / "bin" / Path(sys.executable).name), "folders resolved, not the file"
    assert sandbox.visible(python, read_only, aliases)
    assert str(ENVIRONMENT) in read_only or any(str(ENVIRONMENT).startswith(p + "/") for p in read_only)
    assert aliases == {str(prefix): str(ENVIRONMENT)}, "the linked name is shown too (paths written through it)"
    assert sandbox.visible(sys.executable, read_only, aliases)
    assert not sandbox.visible("/nowhere/bin/python", read_only, aliases)


def _regular_install(venv: Path, scratch: Path) -> None:
    """Install the course's distribution (course_lib and course_grading) into ``venv`` from a wheel, not editable."""
    source = scratch / "source"  # what the distribution is built from, outside the checkout (no build/ left in it)
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "course_lib", source / "course_lib", ignore=skip)
    shutil.copytree(Path(cli.__file__).parent, source / "tools" / "course_grading", ignore=skip)
    wheels = scratch / "wheels"
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    build = ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels), str(source)]
    subprocess.run([*pip, *build], check=True, capture_output=True)
    (wheel,) = wheels.glob("course_lib-*.whl")
    # this environment's pip (22.3 or later) installs into the venv, which has none of its own
    target = ["--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", str(wheel)]
    subprocess.run([*pip, *target], check=True, capture_output=True)


@needs_sandbox
def test_a_regular_install_with_packages_in_user_site_grades(tmp_path):
    """The course installed from its wheel (not editable) into a venv, its dependencies in the user's site-packages
    (`pip install --user`); graded through the installed console script `course-grade`."""
    venv = tmp_path / "regular venv é"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    _regular_install(venv, tmp_path)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    user_base = tmp_path / "user base"
    user_site = Path(
        subprocess.run(
            [str(python), "-c", "import site; print(site.getusersitepackages())"],
            env={"PYTHONUSERBASE": str(user_base), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    user_site.mkdir(parents=True)
    # torch, numpy, ipykernel ...: this environment's packages stand in for a `pip install --user`
    (user_site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for folder in (venv, user_base):  # the kernel runs as nobody: an installation is world-readable
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o005 if path.is_dir() else path.stat().st_mode | 0o004)
    env = {"PYTHONUSERBASE": str(user_base), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    where = subprocess.run(
        [str(python), "-c", "import course_grading; print(course_grading.__file__, end='')"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where == f"{purelib}/course_grading/__init__.py", "the grading package comes from the install"
    completed = subprocess.run(
        [str(venv / "bin" / "course-grade"), "doctor"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "[FAIL]" not in completed.stdout
    assert f"course_lib imports in the kernel (from {purelib}/course_lib/__init__.py)" in completed.stdout
    assert str(user_site) in completed.stdout, "the user's site-packages is in the kernel's view"


def test_doctor_prints_a_fail_line_and_exits_nonzero(monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "kernel_python", lambda: "/nowhere/bin/python")
    assert cli.main(["--course", str(ROOT / "assignments"), "doctor"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] the kernel's interpreter /nowhere/bin/python" in out and "fix:" in out
    assert "[FAIL] the canary kernel was not started" in out


@pytest.fixture(scope="module")
def released_course(tmp_path_factory) -> Path:
    """A course copy with assignment 1 released and one student's (perfect) notebook collected."""
    base = tmp_path_factory.mktemp("broken")
    course = base / "assignments"
    shutil.copytree(
        ROOT / "assignments", course, ignore=shutil.ignore_patterns("submitted", "autograded", "feedback", "grading_*")
    )
    for generated in course.glob("gradebook.*"):
        generated.unlink()
    cli.release(cli.Course(course), ["01_codebooks"])
    (base / "hand-ins" / "alice").mkdir(parents=True)
    source = nbformat.read(course / "source" / "01_codebooks" / "01_codebooks.ipynb", as_version=4)
    nbformat.write(source, base / "hand-ins" / "alice" / "01_codebooks.ipynb")
    cli.collect_folder(cli.Course(course), "01_codebooks", base / "hand-ins")
    return course


def _recorded_grades(course: Path) -> list:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        submitted = gradebook.assignment_submissions("01_codebooks")
        return [
            grade.score for submission in submitted for notebook in submission.notebooks for grade in notebook.grades
        ]


@needs_sandbox
@pytest.mark.parametrize("fault", ["interpreter missing in the sandbox", "course_lib not importable"])
def test_a_broken_environment_stops_autograde_before_any_grade(fault, released_course, monkeypatch, capsys):
    if fault == "interpreter missing in the sandbox":
        monkeypatch.setattr(sandbox, "kernel_python", lambda: "/nowhere/bin/python")
        expected = "the kernel's interpreter /nowhere/bin/python"
    else:  # the environment is there, course_lib's folder is not (e.g. an editable install of a moved clone)
        library = str(Path(sys.modules["course_lib"].__file__).resolve().parent)
        paths = sandbox.read_only_paths
        monkeypatch.setattr(sandbox, "read_only_paths", lambda: [p for p in paths() if p != library])
        expected = "course_lib cannot be imported in the kernel (ModuleNotFoundError"
    assert cli.main(["--course", str(released_course), "autograde", "01_codebooks"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the grader cannot run students' notebooks on this machine, so nothing was graded")
    assert expected in err and "how to fix it:" in err and "Traceback" not in err
    assert _recorded_grades(released_course) == [], "nothing may be recorded for a class the grader could not run"
    assert not (released_course / "autograded").exists()
