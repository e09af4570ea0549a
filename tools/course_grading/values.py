"""Plain values across the sandbox boundary: JSON with arrays as base64, never pickle.

The hidden checks run in the grader's process; the student's functions run in the sandboxed
kernel. What crosses between them is data only: ``None``, booleans, integers, floats (NaN and
infinities included), strings, lists (tuples and named tuples arrive as lists), dicts with string
keys, and numeric NumPy arrays / torch tensors (sent as their raw bytes, dtype and shape). A value
of any other type is refused with a message naming it, and :func:`decode` checks everything it
reads (types, dtypes, sizes, nesting), since a hostile kernel may send anything.

This file is also the grader's helper *inside* the kernel: :func:`kernel_helper` is its own source
plus a few lines, executed in the kernel as the module ``_course_grader`` (it needs only the
standard library, NumPy and, when the values are tensors, torch).
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

MAX_DEPTH = 32
MAX_BYTES = 64 * 1024 * 1024  # of one encoded value
# dtypes an array may have on the way in or out; anything else (object, void, strings) is refused
ARRAY_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
)


class ValueTransportError(Exception):
    """A value that cannot cross the boundary (unsupported type, malformed or too large)."""


def _array_entry(array: Any, is_torch: bool) -> dict:
    import numpy as np

    array = np.asarray(array, order="C")  # (ascontiguousarray would make a 0-dim array 1-dim)
    dtype = str(array.dtype)
    if dtype not in ARRAY_DTYPES:
        raise ValueTransportError(f"an array of dtype {dtype} cannot be sent (numbers and booleans only)")
    return {
        "__array__": base64.b64encode(array.tobytes()).decode("ascii"),
        "dtype": dtype,
        "shape": list(array.shape),
        "torch": is_torch,
    }


def to_plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-able data (arrays and tensors as base64 entries); raises ValueTransportError."""
    if depth > MAX_DEPTH:
        raise ValueTransportError(f"the value is nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    module = type(value).__module__.split(".")[0]
    if module == "torch":
        import torch

        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu()
            if tensor.dtype == torch.bfloat16:
                tensor = tensor.float()
            return _array_entry(tensor.resolve_conj().resolve_neg().numpy(), is_torch=True)
        if isinstance(value, torch.Size):
            return [int(size) for size in value]
        if isinstance(value, torch.dtype):
            return str(value)
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            return _array_entry(value, is_torch=False)
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            return float(value)
    if isinstance(value, list | tuple):
        return [to_plain(item, depth + 1) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise ValueTransportError("only dicts with string keys can be sent")
        return {"__dict__": {key: to_plain(item, depth + 1) for key, item in value.items()}}
    raise ValueTransportError(f"a value of type {type(value).__name__} cannot be sent: return numbers, tensors, lists")


def from_plain(data: Any, depth: int = 0, as_torch: bool = True) -> Any:
    """The value that :func:`to_plain` encoded, checked; arrays come back as NumPy (or torch when sent as tensors)."""
    if depth > MAX_DEPTH:
        raise ValueTransportError(f"the value is nested more than {MAX_DEPTH} levels deep")
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if isinstance(data, list):
        return [from_plain(item, depth + 1, as_torch) for item in data]
    if isinstance(data, dict) and set(data) == {"__dict__"} and isinstance(data["__dict__"], dict):
        return {str(key): from_plain(item, depth + 1, as_torch) for key, item in data["__dict__"].items()}
    if isinstance(data, dict) and set(data) == {"__array__", "dtype", "shape", "torch"}:
        return _decode_array(data, as_torch)
    raise ValueTransportError("malformed value")


def _decode_array(data: dict, as_torch: bool) -> Any:
    import numpy as np

    dtype, shape = data["dtype"], data["shape"]
    if dtype not in ARRAY_DTYPES or not isinstance(data["__array__"], str):
        raise ValueTransportError("malformed array")
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise ValueTransportError("malformed array shape")
    raw = base64.b64decode(data["__array__"].encode("ascii"), validate=True)
    if len(raw) != math.prod(shape) * np.dtype(dtype).itemsize:
        raise ValueTransportError("array size does not match its shape")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    if data["torch"] is True and as_torch:
        import torch

        return torch.from_numpy(array)
    return array


def encode(value: Any) -> str:
    """``value`` as one JSON string, at most :data:`MAX_BYTES` long."""
    text = json.dumps(to_plain(value), allow_nan=True)
    if len(text) > MAX_BYTES:
        raise ValueTransportError(f"the value is larger than {MAX_BYTES // 2**20} MiB once encoded")
    return text


def decode(text: str, as_torch: bool = True) -> Any:
    """The value of an :func:`encode` string; raises ValueTransportError on anything malformed."""
    if not isinstance(text, str) or len(text) > MAX_BYTES:
        raise ValueTransportError("the value is missing or too large")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ValueTransportError(f"the value is not valid JSON ({type(error).__name__})") from None
    try:
        return from_plain(data, as_torch=as_torch)
    except (ValueError, TypeError, KeyError, OverflowError, MemoryError, RecursionError) as error:
        if isinstance(error, ValueTransportError):
            raise
        raise ValueTransportError(f"malformed value ({type(error).__name__})") from None


def decode_json_object(text: str) -> dict:
    """A JSON object (the kernel's answer envelope), checked for size and type."""
    if not isinstance(text, str) or len(text) > 2 * MAX_BYTES:
        raise ValueTransportError("the answer is missing or too large")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueTransportError("the answer is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueTransportError("the answer is not an object")
    return data


# ---------------------------------------------------------------------------------------------------
# Inside the kernel: call a student's function, or evaluate instructor code, with plain values.


def kernel_call(namespace: dict, name: str, payload: str) -> str:
    """Call ``namespace[name](*args, **kwargs)`` with the decoded payload; the result or the error, encoded."""
    try:
        args, kwargs = decode(payload)
        function = namespace.get(name)
        if function is None:
            return json.dumps({"missing": name})
        if not callable(function):
            return json.dumps({"not_callable": name, "type": type(function).__name__})
        result = function(*args, **kwargs)
    except ValueTransportError:
        raise
    except BaseException as error:  # the student's error, reported to the grader as data
        return json.dumps({"error": {"type": type(error).__name__, "message": str(error)[:2000]}})
    try:
        return json.dumps({"value": encode(result)})
    except ValueTransportError as error:
        return json.dumps({"unsendable": str(error)})


def kernel_evaluate(namespace: dict, code: str) -> str:
    """Run instructor ``code`` in the user's namespace; the value of its last expression, encoded."""
    import ast

    try:
        tree = ast.parse(code, mode="exec")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, "<grader>", "exec"), namespace)
        result = eval(compile(ast.Expression(last.value), "<grader>", "eval"), namespace) if last else None
    except BaseException as error:
        return json.dumps({"error": {"type": type(error).__name__, "message": str(error)[:2000]}})
    try:
        return json.dumps({"value": encode(result)})
    except ValueTransportError as error:
        return json.dumps({"unsendable": str(error)})


# Functions a submission might replace to make its own checks pass; the grader names any that changed
# in the feedback (its own checks run outside the kernel, so replacing them gains nothing).
WATCHED = (
    "builtins.AssertionError",
    "builtins.__import__",
    "numpy.allclose",
    "numpy.isclose",
    "numpy.array_equal",
    "numpy.testing.assert_allclose",
    "numpy.testing.assert_array_equal",
    "numpy.testing.assert_equal",
    "torch.allclose",
    "torch.isclose",
    "torch.equal",
    "torch.testing.assert_close",
)
_originals: dict[str, Any] = {}


def _lookup(path: str) -> Any:
    import importlib

    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _transformer_count() -> int:
    from IPython import get_ipython

    shell = get_ipython()
    return len(shell.ast_transformers) + len(shell.input_transformers_post) if shell is not None else 0


def record_originals() -> None:
    """Remember the watched functions as they are before any student code runs."""
    for path in WATCHED:
        try:
            _originals[path] = _lookup(path)
        except Exception:  # a library that is not installed
            pass
    _originals["IPython code transformers"] = _transformer_count()


def tamper_report() -> str:
    """The watched names that no longer are what they were (an encoded list, as kernel_call answers)."""
    changed = []
    for path, original in _originals.items():
        try:
            now = _transformer_count() if path == "IPython code transformers" else _lookup(path)
        except Exception:
            now = None
        if now is not original and now != original:
            changed.append(path)
    return json.dumps({"value": encode(changed)})


KERNEL_MODULE = "_course_grader"


def kernel_helper() -> str:
    """Code that installs this module in a kernel as ``_course_grader`` (run there once, before any cell)."""
    return (
        "def _install_course_grader(source):\n"
        "    import sys, types\n"
        f"    module = types.ModuleType({KERNEL_MODULE!r})\n"
        "    exec(compile(source, '<course grader>', 'exec'), module.__dict__)\n"
        f"    sys.modules[{KERNEL_MODULE!r}] = module\n"
        f"_install_course_grader({Path(__file__).read_text()!r})\n"
        "del _install_course_grader\n"
        f"__import__('sys').modules[{KERNEL_MODULE!r}].record_originals()\n"
    )
