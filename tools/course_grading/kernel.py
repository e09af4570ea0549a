"""A student's kernel in the sandbox, driven cell by cell: timeouts, output caps, interrupts, restarts.

nbgrader executes a submission with nbclient; this replaces that step so the grader keeps control:

- the kernel runs in :mod:`course_grading.sandbox` (another user, its own file-system view, no
  network, resource limits), reached over Unix sockets;
- each cell has a time limit; past it the kernel is interrupted, and if it does not stop within a
  few seconds (a loop that catches ``KeyboardInterrupt``) it is killed, restarted, and the cells
  that ran before are replayed silently, so the rest of the notebook is still graded;
- output is capped *while it arrives* (per cell and per notebook), so a cell that prints gigabytes
  costs the grader no memory;
- ``input()`` fails at once (no stdin), and values come out only as plain data
  (:mod:`course_grading.values`).
"""

from __future__ import annotations

import ast
import json
import os
import queue
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import zmq
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

from course_grading import sandbox, values

KERNEL_NAME = "course-grading-sandbox"
MAX_MESSAGE_BYTES = 2 * values.MAX_BYTES + 2**20  # a value at its largest, encoded twice, and headers
# In nbgrader's log when a notebook's first kernel did not start: before any of the student's code ran,
# so the grader's fault (course-grade then records nothing for that student and says so).
KERNEL_START_FAILED = "course-grading: the grader could not start a kernel"


class KernelLost(Exception):
    """The kernel died or was stopped; what ran in it is gone."""


class CellTimeout(Exception):
    """A request did not finish within its time limit."""


@dataclass
class OutputCaps:
    """How much output one cell, and one notebook, may keep (characters of text, bytes of images)."""

    cell_chars: int = 20_000
    notebook_chars: int = 400_000
    output_bytes: int = 1_000_000  # one rich output (an image, an audio player)


@dataclass
class CellResult:
    outputs: list = field(default_factory=list)
    status: str = "ok"  # "ok", "error", "timeout", "lost"
    error: tuple[str, str] | None = None  # (ename, evalue) of an error in the cell
    dropped_chars: int = 0
    execution_count: int | None = None
    seconds: float = 0.0


# Starts ipykernel after adding the package folders (JSON list, argv[1]) that the interpreter's own start
# did not add (`-I` leaves out the user's `pip install --user` folder), .pth files included.
LAUNCHER = """import json, os, site, sys
known = {os.path.realpath(p) for p in sys.path}
for folder in json.loads(sys.argv.pop(1)):
    if os.path.realpath(folder) not in known and os.path.isdir(folder):
        site.addsitedir(folder)
from ipykernel.kernelapp import launch_new_instance
launch_new_instance()
"""


def kernel_command(sandboxed: bool = True) -> list[str]:
    """The kernel's command line; ``{connection_file}`` stands for its connection file."""
    python = sandbox.kernel_python() if sandboxed else sys.executable
    argv = [python, "-I", "-c", LAUNCHER, json.dumps(sandbox.site_roots()), "-f", "{connection_file}"]
    return argv + ["--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=CRITICAL"]


def kernel_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: nothing from the grader's (no tokens, no paths), one thread, CPU, tiny scale."""
    venv_bin = str(Path(sandbox.kernel_python()).parent)
    env = {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": sandbox.WORK_DIR,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": "/tmp",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "IPYTHONDIR": "/tmp/ipython",
        "JUPYTER_RUNTIME_DIR": "/tmp/jupyter",
        "XDG_CACHE_HOME": "/tmp/cache",
        "NUMBA_CACHE_DIR": "/tmp/numba",
        "TORCH_HOME": "/tmp/torch",
        "COURSE_SCALE": "tiny",
        "COURSE_DEVICE": "cpu",
        "COURSE_DATA": f"{sandbox.WORK_DIR}/.course_data",
        "COURSE_GRADING": "1",
    }
    env.update(extra or {})
    return env


class SandboxedKernel:
    """One IPython kernel in the sandbox; :meth:`execute` runs a cell, :meth:`call` a function by name.

    Args:
        limits: the sandbox's resource limits.
        caps: output caps.
        env: extra environment variables for the kernel.
        sandboxed: False runs the kernel as a plain local process (the grader's own user, its
            files, its network): only for trusted notebooks, e.g. the instructor's own solutions
            on a machine without root; never for students' work.
        stderr: a file for the kernel's own standard error (the canary keeps it to say why a
            kernel did not start); by default it is the grader's.
    """

    def __init__(
        self,
        limits: sandbox.Limits | None = None,
        caps: OutputCaps | None = None,
        env: dict[str, str] | None = None,
        sandboxed: bool = True,
        stderr: Path | None = None,
    ) -> None:
        self.limits = limits or sandbox.Limits()
        self.stderr = stderr
        self._stderr_file = None
        self.caps = caps or OutputCaps()
        self.env = kernel_environment(env)
        self.sandboxed = sandboxed
        self.notebook_chars = 0
        self.restarts = 0
        self._base: Path | None = None
        self.km: KernelManager | None = None
        self.kc = None
        self._context: zmq.Context | None = None

    # -- life cycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> None:
        """Start the kernel and install the grader's helper in it; raises KernelLost if it does not come up."""
        if self.sandboxed and (problem := sandbox.sandbox_problem()):
            raise RuntimeError(problem)
        self._base = Path(tempfile.mkdtemp(prefix="course-grading-"))
        ipc = self._base / "ipc"
        ipc.mkdir()
        kernels = self._base / "kernels" / KERNEL_NAME
        kernels.mkdir(parents=True)
        connection_file = self._base / "connection.json"
        argv = kernel_command(self.sandboxed)
        if self.sandboxed:
            os.chown(ipc, sandbox.NOBODY, sandbox.NOBODY)
            new_root = self._base / "root"
            new_root.mkdir()
            read_only = sandbox.read_only_paths()
            aliases = sandbox.alias_paths(read_only)
            if not sandbox.visible(argv[0], read_only, aliases):
                self.shutdown()
                raise KernelLost(f"the kernel's interpreter {argv[0]} is not in the sandbox's view ({read_only})")
            spec = sandbox.SandboxSpec(
                new_root=str(new_root),
                connection_file=str(connection_file),
                ipc_dir=str(ipc),
                read_only=read_only,
                argv=argv,
                env=self.env,
                limits=self.limits,
                aliases=aliases,
            )
            command = sandbox.outer_command(sandbox.write_spec(spec, self._base / "sandbox.json"))
            kernel_env: dict[str, str] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        else:
            command = argv
            kernel_env = {**self.env, "HOME": str(self._base), "COURSE_DATA": str(self._base / "data")}
            kernel_env["PATH"] = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
            for key in ("MPLCONFIGDIR", "IPYTHONDIR", "JUPYTER_RUNTIME_DIR", "XDG_CACHE_HOME", "NUMBA_CACHE_DIR"):
                kernel_env[key] = str(self._base / key.lower())
        spec_json = {
            "argv": command,
            "display_name": "course grading",
            "language": "python",
            "interrupt_mode": "message",
        }
        (kernels / "kernel.json").write_text(json.dumps(spec_json))
        self.km = KernelManager(
            kernel_name=KERNEL_NAME,
            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels.parent)]),
            transport="ipc",
            ip=str(ipc / "k"),
            connection_file=str(connection_file),
        )
        # The launcher's environment replaces (not extends) ours: nothing of the grader's reaches the kernel.
        launch: dict[str, Any] = {}
        if self.stderr is not None:
            launch["stderr"] = self._stderr_file = self.stderr.open("ab")
        self.km.start_kernel(env=kernel_env, cwd=str(self._base), **launch)
        # One message over MAX_MESSAGE_BYTES disconnects the kernel instead of filling the grader's memory
        # (the output caps apply only to messages that arrive).
        self._context = zmq.Context()
        self._context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self.kc = self.km.client(context=self._context)
        self.kc.allow_stdin = False
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=timeout)
        except RuntimeError as error:
            self.shutdown()
            raise KernelLost(f"the kernel did not start: {error}") from None
        if self.sandboxed:  # the sockets exist now: from here on the kernel may create nothing on the host
            os.chown(ipc, 0, 0)
            os.chmod(ipc, 0o755)
        result = self.execute(values.kernel_helper(), timeout=timeout, store_history=False, silent=True)
        if result.status != "ok":
            raise KernelLost(f"the grader's helper could not be installed in the kernel: {result.error}")

    def alive(self) -> bool:
        return self.km is not None and self.km.is_alive()

    def shutdown(self) -> None:
        """Kill the kernel (and with it every process of the sandbox) and delete its files."""
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        if self.km is not None:
            launcher = getattr(self.km.provisioner, "pid", None) if self.km.provisioner is not None else None
            processes = descendants(launcher) if launcher else []
            try:
                self.km.shutdown_kernel(now=True)
            except Exception:  # already gone
                pass
            self.km = None
            _wait_until_gone(processes)
        if self._context is not None:
            self._context.destroy(linger=0)
            self._context = None
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None

    def restart(self, timeout: float = 120.0) -> None:
        """A fresh kernel in place of this one (state lost)."""
        self.shutdown()
        self.restarts += 1
        self.start(timeout)

    def __enter__(self) -> SandboxedKernel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- running code ----------------------------------------------------------------------------

    def execute(
        self,
        code: str,
        timeout: float,
        store_history: bool = True,
        silent: bool = False,
        user_expressions: dict[str, str] | None = None,
        keep_outputs: bool = True,
    ) -> CellResult:
        """Run ``code``; outputs capped, at most ``timeout`` seconds (then interrupt, or kill if need be).

        Returns a :class:`CellResult`; ``status`` is "timeout" when the kernel was interrupted (its
        state kept) and "lost" when it died or had to be killed (call :meth:`restart`). With
        ``user_expressions``, the reply's evaluated expressions are in ``result.user_expressions``.
        """
        if not self.alive():
            return CellResult(status="lost", error=("KernelLost", "the kernel is not running"))
        start = time.monotonic()
        result = CellResult()
        result.user_expressions = {}
        msg_id = self.kc.execute(
            code,
            silent=silent,
            store_history=store_history,
            allow_stdin=False,
            stop_on_error=False,
            user_expressions=user_expressions or {},
        )
        deadline = start + timeout
        idle = False
        while not idle:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                result.status = "timeout"
                result.error = ("CellTimeout", f"did not finish within {timeout:.0f} s")
                self._stop_running_cell(msg_id, result)
                break
            try:
                message = self.kc.get_iopub_msg(timeout=min(remaining, 1.0))
            except queue.Empty:
                if not self.alive():
                    result.status = "lost"
                    result.error = ("KernelLost", "the kernel died (out of memory, killed, or exited)")
                    break
                continue
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            idle = self._handle(message, result, keep_outputs)
        if result.status in ("ok", "error"):
            reply = self._reply(msg_id, timeout=max(5.0, deadline - time.monotonic()))
            if reply is None:
                result.status = "lost" if not self.alive() else "error"
                result.error = result.error or ("KernelLost", "the kernel sent no reply")
            else:
                content = reply.get("content", {})
                result.execution_count = content.get("execution_count")
                if content.get("status") == "error" and result.status == "ok":
                    result.status = "error"
                    result.error = (str(content.get("ename", "Error")), str(content.get("evalue", ""))[:2000])
                expressions = content.get("user_expressions")
                result.user_expressions = expressions if isinstance(expressions, dict) else {}
        if result.dropped_chars:
            note = f"\n[{result.dropped_chars:,} characters of output not kept: the grader keeps at most {self.caps.cell_chars:,} per cell]\n"
            result.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=note))
        result.seconds = time.monotonic() - start
        return result

    def _handle(self, message: dict, result: CellResult, keep: bool) -> bool:
        """Take one iopub message into ``result``; True when the kernel went idle."""
        kind = message.get("msg_type")
        content = message.get("content", {})
        if kind == "status":
            return content.get("execution_state") == "idle"
        if kind == "error":
            result.status = "error"
            result.error = (str(content.get("ename", "Error"))[:200], str(content.get("evalue", ""))[:2000])
        if kind == "clear_output":
            if keep:
                result.outputs = []
            return False
        if kind not in ("stream", "display_data", "execute_result", "error") or not keep:
            return False
        try:
            output = nbformat.v4.output_from_msg(message)
        except (KeyError, ValueError, TypeError):
            return False
        size = _output_size(output)
        cell_room = self.caps.cell_chars - sum(_output_size(o) for o in result.outputs)
        room = min(cell_room, self.caps.notebook_chars - self.notebook_chars)
        if kind == "stream":
            text = output.get("text", "")
            text = text if isinstance(text, str) else "".join(text)
            if len(text) > room:
                result.dropped_chars += len(text) - max(room, 0)
                text = text[: max(room, 0)]
            if not text:
                return False
            output["text"] = text
            self.notebook_chars += len(text)
            last = result.outputs[-1] if result.outputs else None
            if last is not None and last.get("output_type") == "stream" and last.get("name") == output.get("name"):
                last["text"] += text
            else:
                result.outputs.append(output)
            return False
        if kind == "error":
            output["traceback"] = [line[:2000] for line in output.get("traceback", [])[-30:]]
            size = _output_size(output)
        if size > self.caps.output_bytes or size > room:
            result.dropped_chars += size
            return False
        self.notebook_chars += size
        result.outputs.append(output)
        return False

    def _reply(self, msg_id: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                reply = self.kc.get_shell_msg(timeout=min(1.0, deadline - time.monotonic()))
            except queue.Empty:
                if not self.alive():
                    return None
                continue
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                return reply
        return None

    def _stop_running_cell(self, msg_id: str, result: CellResult, grace: float = 5.0) -> None:
        """Interrupt the kernel; if it is not idle within ``grace`` seconds, kill it."""
        try:
            self.km.interrupt_kernel()
        except Exception:
            pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                message = self.kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if message.get("msg_type") == "status" and message["content"].get("execution_state") == "idle":
                self._reply(msg_id, timeout=2.0)
                return
        result.status = "lost"
        result.error = ("KernelLost", f"did not stop within {grace:.0f} s of an interrupt, so the kernel was killed")
        self.shutdown()

    # -- plain values out of the kernel ----------------------------------------------------------

    def call(self, name: str, args: tuple, kwargs: dict, timeout: float) -> dict:
        """Call the kernel's ``name(*args, **kwargs)``; returns the kernel's answer as data.

        The answer is one of ``{"value": ...}``, ``{"error": {"type", "message"}}``, ``{"missing": name}``,
        ``{"not_callable": name}``, ``{"unsendable": why}``, ``{"timeout": seconds}``, ``{"lost": why}``,
        ``{"garbled": why}`` (the kernel's helper did not answer as it should).
        """
        payload = values.encode((list(args), kwargs))
        expression = f"__import__('sys').modules[{values.KERNEL_MODULE!r}].kernel_call(get_ipython().user_ns, {name!r}, {payload!r})"
        return self._ask(expression, timeout)

    def evaluate(self, code: str, timeout: float) -> dict:
        """Run instructor ``code`` in the kernel's namespace; its last expression's value, as :meth:`call`."""
        expression = (
            f"__import__('sys').modules[{values.KERNEL_MODULE!r}].kernel_evaluate(get_ipython().user_ns, {code!r})"
        )
        return self._ask(expression, timeout)

    def tamper_report(self, timeout: float = 10.0) -> list[str]:
        """The watched functions (``values.WATCHED``) that the notebook replaced; [] if the kernel cannot say."""
        answer = self._ask(f"__import__('sys').modules[{values.KERNEL_MODULE!r}].tamper_report()", timeout)
        changed = answer.get("value")
        return [str(name) for name in changed] if isinstance(changed, list) else []

    def _ask(self, expression: str, timeout: float) -> dict:
        result = self.execute(
            "", timeout, store_history=False, user_expressions={"answer": expression}, keep_outputs=False
        )
        if result.status == "timeout":
            return {"timeout": timeout}
        if result.status == "lost":
            return {"lost": result.error[1] if result.error else "the kernel stopped"}
        answer = result.user_expressions.get("answer")
        if not isinstance(answer, dict) or answer.get("status") != "ok":
            why = answer.get("evalue", "") if isinstance(answer, dict) else ""
            return {"garbled": f"the grader's helper failed in the kernel {why}".strip()}
        text = answer.get("data", {}).get("text/plain")
        try:
            reply = values.decode_json_object(_literal_string(text))
        except (values.ValueTransportError, ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            return {"garbled": "the kernel's answer could not be read"}
        if "value" in reply:
            try:
                return {"value": values.decode(reply["value"])}
            except values.ValueTransportError as error:
                return {"garbled": str(error)}
        return reply


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, read from /proc (the sandbox's init, the kernel, what it started)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_until_gone(processes: list[int], seconds: float = 10.0) -> None:
    """Wait for the sandbox's processes to die with its namespace; kill any that linger."""
    deadline = time.monotonic() + seconds
    while any(running(pid) for pid in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in processes:
        if running(pid) and _belongs_to_sandbox(pid):  # never a process that took a freed pid
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _belongs_to_sandbox(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    uid_line = next((line for line in status.splitlines() if line.startswith("Uid:")), "")
    return str(sandbox.NOBODY) in uid_line.split() or b"course_grading/sandbox.py" in command


def _literal_string(text: Any) -> str:
    """The ``str`` whose repr ``text`` is (IPython's text/plain of a string), read without evaluating code."""
    if not isinstance(text, str) or len(text) > 2 * values.MAX_BYTES:
        raise ValueError("no string")
    value = ast.literal_eval(text)
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value


def _output_size(output: dict) -> int:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
        return len(text) if isinstance(text, str) else sum(len(t) for t in text)
    total = 0
    for value in output.get("data", {}).values():
        total += len(value) if isinstance(value, str) else len(str(value))
    for line in output.get("traceback", []) or []:
        total += len(line)
    return total + len(str(output.get("evalue", "")))
