"""The layout rules of CONTRIBUTING.md that a grep can check: notebooks import lessons, not commands; no sys.path edits."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND_MODULE = re.compile(r"course_lib\.\w+\.(train|train_\w+)\b")  # course_lib.train itself is the library's loop


def test_no_notebook_imports_a_training_command():
    offenders = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                for line in "".join(cell["source"]).splitlines():
                    if "import" in line and COMMAND_MODULE.search(line):
                        offenders.append(f"{path.name}: {line.strip()}")
    assert not offenders, "notebooks import command modules (move what they use to a library module):\n" + "\n".join(
        offenders
    )


def test_the_library_and_the_grader_never_edit_sys_path():
    edits = re.compile(r"sys\.path\.(insert|append)|sys\.path\s*=")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("course_lib", "tools", "assignments")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if edits.search(path.read_text())
    ]
    assert not offenders, f"sys.path edited in {offenders}: install the package instead"


def _notebook_uses_of_course_lib():
    """Map each course_lib function or class a notebook uses to the notebooks (file stems) that use it.

    A use is a name imported with ``from course_lib... import name`` or an attribute ``A.name`` of a course_lib
    module the notebook imported (``from course_lib import audio as A``). Lines starting with ``%`` or ``!``
    (magics, shell) are dropped before a cell is parsed.
    """
    import ast
    import importlib
    import inspect
    import types

    uses = {}  # "module.qualname" -> (object, set of notebook stems)

    def record(obj, notebook):
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__.startswith("course_lib"):
            key = f"{obj.__module__}.{obj.__qualname__}"
            uses.setdefault(key, (obj, set()))[1].add(notebook)

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        trees = []
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                lines = "".join(cell["source"]).splitlines()
                trees.append(ast.parse("\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))))
        modules = {}  # alias in the notebook -> course_lib module
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "course_lib":
                    for alias in node.names:
                        module = importlib.import_module(node.module)
                        if not hasattr(module, alias.name):  # a submodule: ``from course_lib import audio as A``
                            importlib.import_module(f"{node.module}.{alias.name}")
                        obj = getattr(module, alias.name)
                        if isinstance(obj, types.ModuleType):
                            modules[alias.asname or alias.name] = obj
                        record(obj, path.stem)
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name.split(".")[0] == "course_lib" and alias.asname:
                            modules[alias.asname] = importlib.import_module(alias.name)
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                    # a notebook variable may shadow the alias (``audio.shape``): only the module's own names count
                    if hasattr(modules[node.value.id], node.attr):
                        record(getattr(modules[node.value.id], node.attr), path.stem)
    return uses


def test_every_library_name_a_notebook_uses_names_its_notebook():
    """libfmp's signpost: a function or class a notebook calls says in its own docstring where it is taught.

    Rule: ``inspect.getdoc(obj)`` contains the file stem (``02_vq_vae``) of at least one notebook that uses it,
    so ``Notebook: notebooks/02_vq_vae.ipynb`` and ``Notebooks: 02_vq_vae, 03_hierarchical_vqvae`` both pass.
    Constants and modules are not checked; functions and classes defined in course_lib are.
    """
    import inspect

    uses = _notebook_uses_of_course_lib()
    assert len(uses) > 100, f"found only {len(uses)} course_lib names in the notebooks: is the parser broken?"
    offenders = [
        f"{name}  (used by {', '.join(sorted(notebooks))})"
        for name, (obj, notebooks) in sorted(uses.items())
        if not any(notebook in (inspect.getdoc(obj) or "") for notebook in notebooks)
    ]
    assert not offenders, (
        f"{len(offenders)} of {len(uses)} course_lib names the notebooks use do not name their notebook in their "
        "docstring (add 'Notebook: notebooks/NN_name.ipynb'):\n" + "\n".join(offenders)
    )
