"""Artifact files: atomic writes (a reader never sees half a file, a killed run or a full disk
never leaves one) and reads that take regular files only (a FIFO would block the read forever)."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from at2seld_edge.errors import EdgeError, ErrorKind

BUNDLE_MANIFEST = "manifest.json"
BUNDLE_FORMAT_FAMILY = "at2seld-edge.bundle/"  # every format version of a deployment bundle's manifest


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; an artifact is as readable as any new file
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as e:
        if e.errno not in NO_SPACE:
            raise
        raise EdgeError(f"{path}: not written: {os.strerror(e.errno).lower()} in {path.parent}; no partial file "
                        "was left (free some space and run the command again)") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a full disk, a quota, a file-size limit


FILE_TYPES = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISCHR: "a character device",
              stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}


def read_regular_file(path: str | os.PathLike, kind: str = "file", max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file; a folder, FIFO, device or socket is refused in one line (a FIFO
    without a writer would block the read forever: it is opened non-blocking and never read)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise EdgeError(f"{path}: cannot read {kind}: {e.strerror or e}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = next((name for test, name in FILE_TYPES.items() if test(mode)), "an unknown kind of file")
        raise EdgeError(f"{path}: is {what}, not a regular file; give the {kind} itself")
    with os.fdopen(fd, "rb") as f:
        data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise EdgeError(f"{path}: larger than {max_bytes:,} bytes; too large for a {kind}")
    return data


def read_text_file(path: str | os.PathLike, kind: str = "file", max_bytes: int | None = None) -> str:
    """A UTF-8 regular file; anything else is one line naming the file and where it went wrong."""
    data = read_regular_file(path, kind, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise EdgeError(f"{path}:{line}: not UTF-8 text (byte {e.start}: 0x{data[e.start]:02x}); save the {kind} "
                        "as UTF-8") from None


def is_bundle(folder: Path) -> bool:
    """A folder with a manifest.json of a deployment bundle's format (any version)."""
    manifest = folder / BUNDLE_MANIFEST
    try:
        if not manifest.is_file() or manifest.stat().st_size > 16 << 20:
            return False
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and isinstance(data.get("format"), str) and data["format"].startswith(
        BUNDLE_FORMAT_FAMILY)


def check_not_in_bundle(path: str | os.PathLike, may_be_bundle: bool = False) -> None:
    """Refuse an output inside a bundle (or the bundle folder itself, unless `may_be_bundle`: the
    bundle edge build replaces): a bundle holds only what its manifest lists, so a report written
    there would make it fail its own integrity check. A usage error: the path alone is wrong."""
    full = Path(path).resolve()
    for folder in full.parents if may_be_bundle else (full, *full.parents):
        if is_bundle(folder):
            raise EdgeError(f"{path}: inside the bundle {folder}; a bundle holds only what its manifest lists: "
                            "write outputs outside it", ErrorKind.USAGE)


def check_output_dir(out: str | os.PathLike, is_ours: Callable[[Path], bool], what: str,
                     may_be_bundle: bool = False) -> None:
    """Refuse, before any work, an output folder that cannot be written, lies inside a bundle or
    holds something else (`is_ours` tells an earlier output of the same stage, which may be
    replaced or resumed; `may_be_bundle`: the output is a bundle, which may replace one)."""
    out = Path(out)
    check_not_in_bundle(out, may_be_bundle)
    if out.exists() and not out.is_dir():
        raise EdgeError(f"{out}: exists and is not a folder; give another --out")
    if out.is_dir() and any(out.iterdir()) and not is_ours(out):
        raise EdgeError(f"{out}: exists, is not empty and is not a {what}; give another --out")
    check_writable_parent(out)


def check_output_file(path: str | os.PathLike) -> None:
    """Refuse an output file that is a folder, lies inside a bundle or cannot be written, before
    any work."""
    path = Path(path)
    check_not_in_bundle(path)
    if path.is_dir():
        raise EdgeError(f"{path}: is a folder; give a file name")
    check_writable_parent(path)


def check_writable_parent(path: Path) -> None:
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise EdgeError(f"{path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EdgeError(f"{path}: cannot write in {parent} (permission denied)")


def work_dir_beside(out: Path, tag: str = "partial") -> Path:
    """A fresh hidden folder next to `out` to assemble it in (then renamed onto it: same file
    system, so the rename is atomic), with the permissions of any new folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.{tag}-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)
    return work


@contextmanager
def output_lock(out: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the output `out` for a whole run (a hidden lock file beside it,
    released by the kernel when the process ends, however it ends): a second run to the same
    output fails at once, naming the holder, instead of interleaving with the first."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.parent / f".{out.name}.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise EdgeError(f"{out}: another {what} is writing it (process {holder}, lock {lock}); wait for it to "
                        "finish or give another --out") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table, as every report writes them."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def load_error_reason(e: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, in our words: torch's message advises
    retrying with weights_only=False, which would run whatever the file's pickle asks for."""
    text = str(e)
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if m:
        return f"it holds a pickled `{m.group(1)}` object; refused without running it (weights_only=True)"
    m = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|$)", text, re.S)
    if m:
        return f"its pickle stream has {m.group(1).strip().lower()}: not a file torch reads safely; refused without running it"
    if isinstance(e, (KeyError, EOFError, RuntimeError)) or "invalid load key" in text or "zip" in text.lower():
        return "not a PyTorch file (neither a zip archive nor a pickle torch can read)"
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(e).__name__)
    return first if "weights_only" not in first else "torch.load refused it"
