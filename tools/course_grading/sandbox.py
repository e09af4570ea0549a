"""The sandbox a student's notebook runs in: its own file-system view, no network, no privileges, limits.

nbgrader runs a submission's kernel with the grader's own permissions, so student code can read the
hidden tests and solutions and rewrite the gradebook. Here the kernel is started (by root) as::

    unshare --mount --pid --fork --kill-child --net --ipc --uts -- python sandbox.py SPEC.json

and this file, as PID 1 of the new namespaces, builds a new root file system on a small tmpfs that
holds only what a kernel needs, read-only (``/usr``, ``/etc``, the Python installation, the
virtual environment and ``course_lib``), plus empty writable ``/work`` (the kernel's working
directory), ``/tmp`` and ``/dev/shm`` of bounded size. The course folder (sources with solutions and
hidden tests, the gradebook, the other students' submissions) is not in that view at all. Then it
``chroot``s there and runs the kernel through ``setpriv`` (another user, no groups, no new
privileges, no capabilities) and ``prlimit`` (CPU seconds, address space, file size, processes, no
core files). The new network namespace has only a loopback that is down, so the kernel reaches no
network; it talks to the grader over Unix sockets in one directory bound into the view (ZeroMQ's
``ipc`` transport). Killing the ``unshare`` process kills PID 1 and with it every process the student
started (``--kill-child`` and the PID namespace), so nothing outlives the notebook.

Needs root (``sudo``, or a CI runner as root): dropping to another user and making namespaces is
what root may do. :func:`sandbox_problem` says why the sandbox cannot start, or None.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The account "nobody": owns no files, so it can read only what is world-readable in the view.
NOBODY = 65534
# Where the kernel works inside the view (its HOME and working directory).
WORK_DIR = "/submission"


@dataclass
class Limits:
    """Resource limits of one kernel (``prlimit``); sizes in MiB.

    Attributes:
        cpu_seconds: CPU time of the kernel process (it is killed past it; SIGXCPU); the grader's
            wall-clock limit per notebook is the main limit, this one stops a kernel that the
            grader could not stop.
        memory_mib: address space of each process (RLIMIT_AS); torch needs about 1.5 GiB of it
            just to import.
        file_mib: largest file the kernel may write (RLIMIT_FSIZE).
        processes: processes and threads of the sandbox user (RLIMIT_NPROC): stops fork bombs.
        work_mib, tmp_mib: sizes of the writable ``/work`` and ``/tmp`` (tmpfs, in memory).
    """

    cpu_seconds: int = 900
    memory_mib: int = 6144
    file_mib: int = 64
    processes: int = 256
    work_mib: int = 256
    tmp_mib: int = 256


@dataclass
class SandboxSpec:
    """Everything the inside stage needs, written as JSON by :func:`write_spec` (readable by root only)."""

    new_root: str  # an empty directory (host path) that becomes "/"
    connection_file: str  # the kernel's connection file (host path), copied into the view
    ipc_dir: str  # directory of the kernel's Unix sockets: bound read-write at the same path
    read_only: list[str]  # host paths bound read-only at the same paths
    argv: list[str]  # the kernel's command; "{connection_file}" is replaced by its path in the view
    env: dict[str, str]
    uid: int = NOBODY
    gid: int = NOBODY
    limits: Limits = field(default_factory=Limits)
    files: dict[str, str] = field(default_factory=dict)  # host path -> name under /work, copied in
    aliases: dict[str, str] = field(default_factory=dict)  # path in the view -> host path, bound read-only


def sandbox_problem() -> str | None:
    """Why a sandboxed kernel cannot start on this machine (with the fix), or None when it can."""
    if sys.platform != "linux":
        return "The grading sandbox needs Linux (namespaces, setpriv, prlimit): grade on a Linux machine or VM."
    if os.geteuid() != 0:
        return (
            "The grading sandbox must start as root to run student code as an unprivileged user: run the "
            "grading command with sudo (e.g. `sudo .venv/bin/course-grade autograde ...`)."
        )
    missing = [tool for tool in ("unshare", "setpriv", "prlimit", "mount") if shutil.which(tool) is None]
    if missing:
        return f"The grading sandbox needs {', '.join(missing)} (Debian/Ubuntu: apt-get install util-linux mount)."
    return None


def write_spec(spec: SandboxSpec, path: Path) -> Path:
    """Write ``spec`` as JSON, readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(asdict(spec), file)
    return path


def outer_command(spec_path: Path) -> list[str]:
    """The command that starts the sandbox: new namespaces, then this file's inside stage as their PID 1."""
    return [
        shutil.which("setpriv") or "setpriv",
        "--pdeathsig=KILL",  # the grader dies (or is killed): so does the sandbox
        "--",
        shutil.which("unshare") or "unshare",
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "--net",
        "--ipc",
        "--uts",
        "--propagation",
        "private",
        "--",
        sys.executable,
        "-I",
        str(Path(__file__).resolve()),
        str(spec_path),
    ]


def kernel_python() -> str:
    """The interpreter the kernel runs: the grader's own, by a path that exists inside the sandbox.

    ``sys.executable`` may reach the environment through a symbolic link (``.venv -> /elsewhere/venv``,
    or a venv inside a linked folder) that the sandbox's view does not have. Its folders are resolved,
    its file name is not: ``bin/python`` of a virtual environment is itself a link to the base
    interpreter, and only by the environment's own path does Python find ``pyvenv.cfg`` (the
    environment's packages).
    """
    executable = Path(os.path.abspath(sys.executable))
    return str(executable.parent.resolve() / executable.name)


def site_directories() -> list[str]:
    """The grader's package folders (``site-packages``, ``dist-packages``), resolved: the environment's,
    the base interpreter's, the user's (``pip install --user``) and any a ``.pth`` file names."""
    found = []
    for entry in sys.path:
        path = Path(entry or ".")
        if path.name in ("site-packages", "dist-packages") and path.is_dir():
            resolved = str(path.resolve())
            if resolved not in found:
                found.append(resolved)
    return found


def site_roots() -> list[str]:
    """The grader's own site folders (the environment's, the user's), resolved: where the kernel's
    interpreter must look for packages and ``.pth`` files, as the grader's did at its start."""
    import site

    roots = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        roots.append(site.getusersitepackages())
    in_path = {os.path.realpath(entry) for entry in sys.path if entry}
    found = []
    for root in roots:
        real = os.path.realpath(root)
        if real in in_path and os.path.isdir(real) and real not in found:
            found.append(real)
    return found


def _needed_paths() -> list[str]:
    """What a kernel needs, as the grader names them (possibly through symbolic links)."""
    import course_lib

    return [
        sys.base_prefix,
        sys.prefix,
        sys.base_exec_prefix,
        sys.exec_prefix,
        str(Path(os.path.abspath(sys.executable)).parent),
        str(Path(os.path.abspath(course_lib.__file__)).parent),
        *site_directories(),
    ]


def _under(path: str, folders: list[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in folders)


def read_only_paths() -> list[str]:
    """What a kernel needs to see, resolved: the system, the Python installation, the environment,
    the package folders and course_lib (each bound read-only at its real path)."""
    paths = ["/usr", "/etc"]
    for prefix in sorted({str(Path(p).resolve()) for p in _needed_paths()}, key=len):
        if not _under(prefix, paths):
            paths.append(prefix)
    return paths


def alias_paths(read_only: list[str]) -> dict[str, str]:
    """The needed paths the grader reaches through a symbolic link that ``read_only`` does not show.

    A path under a bound folder is seen as on the host (its links lead to other bound folders); one
    outside every bound folder (``/home/me/course/.venv`` linked to ``/data/venv``) is bound a second
    time at that name, so what refers to it there (an editable install's path, a ``.pth`` file) works
    in the kernel too. Returns {path in the view: real host path}.
    """
    aliases: dict[str, str] = {}
    for path in sorted({os.path.abspath(p) for p in _needed_paths()}, key=len):
        real = str(Path(path).resolve())
        if path != real and not _under(path, read_only) and not _under(path, list(aliases)):
            aliases[path] = real
    return aliases


def visible(path: str, read_only: list[str], aliases: dict[str, str]) -> bool:
    """Whether the host ``path`` exists in the kernel's view (bound, or under a bound folder)."""
    path = os.path.abspath(path)
    return Path(path).exists() and (_under(path, read_only) or _under(path, list(aliases)))


# ---------------------------------------------------------------------------------------------------
# The inside stage: runs as root, PID 1 of fresh mount/PID/network namespaces (see outer_command).


def _run(*command: str) -> None:
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _bind(source: str, target: Path, read_only: bool, device: bool = False) -> None:
    if Path(source).is_dir():
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    _run("mount", "--bind", source, str(target))
    flags = "remount,bind,nosuid" + ("" if device else ",nodev") + (",ro" if read_only else "")
    _run("mount", "-o", flags, str(target))


def _inside(spec: SandboxSpec) -> None:
    root = Path(spec.new_root)
    limits = spec.limits
    _run("mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "sandbox-root", str(root))
    for name in ("bin", "lib", "lib64", "sbin"):  # merged-/usr systems: /bin -> usr/bin, ...
        host = Path("/") / name
        if host.is_symlink():
            (root / name).symlink_to(os.readlink(host))
    (root / "proc").mkdir()
    _run("mount", "-t", "proc", "-o", "nosuid,nodev,noexec", "proc", str(root / "proc"))
    dev = root / "dev"
    dev.mkdir()
    _run("mount", "-t", "tmpfs", "-o", "size=1m,mode=0755,nosuid", "sandbox-dev", str(dev))
    for node in ("null", "zero", "full", "random", "urandom"):
        _bind(f"/dev/{node}", dev / node, read_only=False, device=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
        (dev / name).symlink_to(target)
    (dev / "stderr").symlink_to("/proc/self/fd/2")
    # The writable places first: a host path under /tmp (a clone, the sockets) is then bound on top.
    for path, size, mode in (
        ("dev/shm", 64, "1777"),
        ("tmp", limits.tmp_mib, "1777"),
        (WORK_DIR, limits.work_mib, "0700"),
    ):
        path = path.lstrip("/")
        (root / path).mkdir(parents=True, exist_ok=True)
        options = f"size={size}m,mode={mode},nosuid,nodev,uid={spec.uid},gid={spec.gid}"
        _run("mount", "-t", "tmpfs", "-o", options, f"sandbox-{path.replace('/', '-')}", str(root / path))
    for name in ("bin", "lib", "lib64", "sbin"):
        host = Path("/") / name
        if host.is_dir() and not host.is_symlink():
            _bind(str(host), root / name, read_only=True)
    for path in spec.read_only:
        _bind(path, root / path.lstrip("/"), read_only=True)
    for path, real in spec.aliases.items():
        _bind(real, root / path.lstrip("/"), read_only=True)
    _bind(spec.ipc_dir, root / spec.ipc_dir.lstrip("/"), read_only=False)
    work = root / WORK_DIR.lstrip("/")
    inside_connection = f"{WORK_DIR}/.kernel-connection.json"
    shutil.copyfile(spec.connection_file, root / inside_connection.lstrip("/"))
    for source, name in spec.files.items():
        shutil.copyfile(source, work / name)
    for path in [work / ".kernel-connection.json", *(work / name for name in spec.files.values())]:
        os.chown(path, spec.uid, spec.gid)
    os.chmod(work / ".kernel-connection.json", 0o600)
    _run("mount", "-o", "remount,ro", str(root))  # the skeleton itself: nothing new at the top level

    argv = [part.replace("{connection_file}", inside_connection) for part in spec.argv]
    mib = 1024 * 1024
    command = [
        "/usr/bin/setpriv",
        f"--reuid={spec.uid}",
        f"--regid={spec.gid}",
        "--clear-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
        "/usr/bin/prlimit",
        f"--cpu={limits.cpu_seconds}",
        f"--as={limits.memory_mib * mib}",
        f"--fsize={limits.file_mib * mib}",
        f"--nproc={limits.processes}",
        "--core=0",
        "--",
        *argv,
    ]
    # PID 1 stays root and outside the chroot: it keeps the parent-death signal that `unshare
    # --kill-child` set (a change of user clears it), so when the grader kills `unshare`, PID 1
    # dies and the kernel takes every process of the namespace with it.
    child = os.fork()
    if child == 0:
        os.setsid()  # the kernel's interrupts (SIGINT to its process group) reach only the sandbox
        os.chroot(root)
        os.chdir(WORK_DIR)
        if not os.path.exists(argv[0]):
            os.write(2, f"sandbox: the kernel's interpreter {argv[0]} does not exist inside the sandbox\n".encode())
            os._exit(127)
        os.execve(command[0], command, spec.env)
    while True:  # reap every orphan of the namespace until the kernel itself exits
        pid, status = os.wait()
        if pid == child:
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def main(spec_path: str) -> None:
    raw = json.loads(Path(spec_path).read_text())
    raw["limits"] = Limits(**raw["limits"])
    spec = SandboxSpec(**raw)
    try:
        _inside(spec)
    except subprocess.CalledProcessError as error:
        sys.exit(f"sandbox set-up failed: {' '.join(error.cmd)}: {error.stderr.decode(errors='replace').strip()}")


if __name__ == "__main__":
    main(sys.argv[1])
