"""Folders that survive a crash at any moment. A folder is complete once the COMPLETE manifest, written last, lists
its files and every one is there with its size; folders are written staged beside their target and swapped in; a
half-written one is set aside (never deleted, never loaded); one live process at a time holds a folder's lock file.
Standard library only, so the command line can check folders before the heavy imports."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Callable, Iterator

from helpers.errors import UserError
from helpers.files import read_json, write_json_atomic

MARKER = "COMPLETE"  # the manifest, written last: {"files": {relative path: size in bytes}}
LOCK_HEARTBEAT = 15.0  # seconds between two touches of a held lock file
LOCK_STALE_AFTER = 120.0  # a lock file untouched this long is abandoned (its holder froze, or died on another host)


# --- complete or not ------------------------------------------------------------------------------------------


def file_sizes(folder: Path, skip: tuple[str, ...] = (MARKER,)) -> dict[str, int]:
    """Every file under folder (relative POSIX path → size), leaving out the top-level names in skip."""
    folder = Path(folder)
    sizes = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and relative.parts[0] not in skip:
            sizes[relative.as_posix()] = path.stat().st_size
    return sizes


def mark_complete(folder: Path, skip: tuple[str, ...] = (), marker: str = MARKER) -> Path:
    """Write the manifest of folder's files (call it last, once everything else is written), atomically."""
    return write_json_atomic(Path(folder) / marker, {"files": file_sizes(folder, (marker, *skip))})


def incomplete_reason(folder: Path, marker: str = MARKER) -> str | None:
    """Why folder is not complete (one line), or None when its manifest's files are all there with their sizes.

    A marker that is not a manifest (older run folders hold the word "complete") lists nothing, so it is trusted.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} is missing"
    if not (folder / marker).is_file():
        return f"it has no {marker} manifest (its writer did not finish, or predates manifests)"
    try:
        files = json.loads((folder / marker).read_text(encoding="utf-8")).get("files", {})
    except (ValueError, AttributeError):
        files = {}
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} of its {size} bytes"
    return None


def is_complete(folder: Path, marker: str = MARKER) -> bool:
    """True if folder's manifest exists and every file it lists is there with its size."""
    return incomplete_reason(folder, marker) is None


def file_problem(path: Path) -> str | None:
    """Why a file is not whole (None: it looks whole): missing, empty, or a safetensors, JSON or torch zip file that
    does not parse to its end."""
    path = Path(path)
    if not path.is_file():
        return "is missing"
    size = path.stat().st_size
    if size == 0:
        return "is empty"
    try:
        if path.suffix == ".safetensors":
            with path.open("rb") as handle:
                length = int.from_bytes(handle.read(8), "little")
                header = json.loads(handle.read(length))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if 8 + length + end != size:
                return f"has {size} bytes, its header says {8 + length + end}"
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix in (".pt", ".pth", ".bin") and _starts_with(path, b"PK") and not zipfile.is_zipfile(path):
            return "is a cut-off torch file"  # torch.save writes a zip archive; a cut one has no directory at its end
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "does not parse"
    return None


def _starts_with(path: Path, prefix: bytes) -> bool:
    """True if the file's first bytes are prefix."""
    with path.open("rb") as handle:
        return handle.read(len(prefix)) == prefix


# --- set aside, staged, swapped in ---------------------------------------------------------------------------


def _free_name(path: Path) -> Path:
    """path itself if unused, else path.2, path.3, …"""
    n, candidate = 1, path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


def set_aside(folder: Path, reason: str, into: Path | None = None, echo: Callable = print) -> Path:
    """Move a half-written folder out of the way (to NAME.incomplete, or into/NAME) and say so in one line."""
    folder = Path(folder)
    if into is None:
        target = _free_name(folder.with_name(folder.name + ".incomplete"))
    else:
        Path(into).mkdir(parents=True, exist_ok=True)
        target = _free_name(Path(into) / folder.name)
    os.replace(folder, target)
    echo(f"set aside {folder} ({reason}) as {target}")
    return target


def keep_if_complete(folder: Path, echo: Callable = print) -> bool:
    """True if folder is complete; a folder there that is not is set aside (one line) and False comes back."""
    folder = Path(folder)
    if not folder.exists():
        return False
    reason = incomplete_reason(folder)
    if reason is None:
        return True
    set_aside(folder, reason, echo=echo)
    return False


def replace_dir(staging: Path, target: Path) -> None:
    """Put a fully written folder in place of target: the old one is renamed away first and deleted last, so
    target is never a half-deleted or half-written folder."""
    staging, target = Path(staging), Path(target)
    old = None
    if target.exists():
        old = target.with_name(f"{target.name}.replaced-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_debris(target: Path, echo: Callable = print) -> None:
    """Delete the staging and replaced copies of target that processes no longer alive left beside it (one line each)."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    for path in target.parent.iterdir():
        for kind in ("staging", "replaced"):
            rest = path.name.removeprefix(f"{target.name}.{kind}-")
            pid = rest.split("-")[0]
            if rest != path.name and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)
                echo(f"removed {path}, the {kind} copy a process that is gone (pid {pid}) left behind")


@contextlib.contextmanager
def staged_dir(target: Path, marker: str | None = MARKER, echo: Callable = print) -> Iterator[Path]:
    """Yield an empty folder beside target to write into; on success mark it complete (unless marker is None) and
    swap it in for target. A crash leaves target as it was, plus a staging copy that the next writer removes."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_debris(target, echo)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.staging-{os.getpid()}-", dir=target.parent))
    try:
        yield staging
        if marker:
            mark_complete(staging, marker=marker)
        replace_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# --- one writer at a time ------------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """True if a process with this id runs on this machine (best effort on Windows: True when it cannot tell)."""
    if pid <= 0:
        return False
    if os.name == "nt":
        try:
            import ctypes

            handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
            if not handle:
                return False
            code = ctypes.c_ulong()
            ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
            ctypes.windll.kernel32.CloseHandle(handle)
            return code.value == 259  # STILL_ACTIVE
        except (AttributeError, OSError):
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:  # a killed child its parent has not waited for yet is a zombie: it holds nothing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def lock_path(folder: Path) -> Path:
    """The lock file of folder: NAME.lock beside it (so it can guard a folder that does not exist yet)."""
    folder = Path(folder).absolute()
    return folder.with_name(folder.name + ".lock")


_held: set[str] = set()  # the lock files this process holds


def _abandoned(path: Path, info: dict | None) -> str | None:
    """Why the lock file at path no longer guards anything (None: its holder may be alive). On this machine the
    holder's pid decides; a holder on another machine counts as gone once its heartbeat stops."""
    try:
        silent = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None  # released meanwhile: nothing to take over
    if info is None:
        return "it is unreadable" if silent > 10 else None  # a lock file is written in microseconds
    if info.get("host") == socket.gethostname():
        pid = info.get("pid")
        return None if isinstance(pid, int) and pid_alive(pid) else f"process {pid} is gone"
    if silent > LOCK_STALE_AFTER:
        return f"process {info.get('pid')} on {info.get('host')} gave no sign of life for {silent / 60:.0f} min"
    return None


def _read_lock(path: Path) -> dict | None:
    """The lock file's content, or None if it cannot be read."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def lock_holder(folder: Path) -> dict | None:
    """The other live process holding folder's lock ({pid, host, since, command}), or None if there is none."""
    path = lock_path(folder)
    if str(path) in _held or not path.exists():
        return None
    info = _read_lock(path)
    return None if _abandoned(path, info) else (info or {"pid": "?", "host": "?", "since": "?"})


def check_not_held(folder: Path) -> None:
    """Refuse in one line if another live process holds folder's lock."""
    holder = lock_holder(folder)
    if holder:
        raise UserError(f"{folder} is in use by process {holder['pid']} on {holder['host']} (since "
                        f"{holder['since']}); wait for it to finish, or delete {lock_path(folder)} if it is gone")


def _heartbeat(path: Path, stop: threading.Event) -> None:
    """Touch the lock file now and then, so other hosts can tell a live holder from a dead one."""
    while not stop.wait(LOCK_HEARTBEAT):
        with contextlib.suppress(OSError):
            os.utime(path)


@contextlib.contextmanager
def hold_lock(folder: Path, wait: float = 0.0, echo: Callable = print) -> Iterator[None]:
    """Hold folder's lock while the block runs (re-entrant in one process). Another live holder: refuse in one
    line, or wait up to `wait` seconds for it; a holder that is gone is taken over with a one-line note."""
    path = lock_path(folder)
    if str(path) in _held:  # held further up the call stack
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    token, deadline, said = uuid.uuid4().hex, time.monotonic() + wait, False
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "token": token, "command": " ".join(sys.argv)[:200]}
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            other = _read_lock(path)
            reason = _abandoned(path, other)
            if reason:
                if _read_lock(path) == other:  # still the same abandoned lock, not one just taken by another
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                    echo(f"took over the lock of {folder}: {reason}")
                continue
            if time.monotonic() >= deadline:
                check_not_held(folder)
                continue
            if not said:
                who = f"process {other['pid']} on {other['host']}" if other else "another process"
                echo(f"waiting for {who}, which is writing {folder}")
                said = True
            time.sleep(1.0)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(info, handle)
        break
    stop = threading.Event()
    _held.add(str(path))
    threading.Thread(target=_heartbeat, args=(path, stop), daemon=True).start()
    try:
        yield
    finally:
        stop.set()
        _held.discard(str(path))
        if (_read_lock(path) or {}).get("token") == token:
            path.unlink(missing_ok=True)
