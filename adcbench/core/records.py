"""Run records: one JSON object per line, appended atomically, with a provenance block."""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import functools
import hashlib
import json
import os
import platform
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCHEMA = 1


def config_hash(config: dict[str, Any]) -> str:
    """Stable hash of what defines a run (not the seed: seeds of one config share a hash)."""
    canon = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def adcbench_version() -> str:
    """The installed adcbench version (read from the package metadata, not the package, so the
    core layer never imports the top-level plugin API)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("adcbench")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def provenance(device: str) -> dict[str, Any]:
    import numpy
    import timm
    import torch

    commit, dirty = code_state()
    return {
        "adcbench": adcbench_version(),
        "git_commit": commit,
        "git_dirty": dirty if commit else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "device": device if device != "cuda" else f"cuda:{torch.cuda.get_device_name()}",
        "torch_threads": torch.get_num_threads(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


@functools.cache
def code_state() -> tuple[str | None, bool]:
    """The checkout's commit and whether it had local changes, read once per process (at its first
    record, just after the code was imported): a long sweep's workers keep running the code they
    loaded while commits land, and their records must name that code, not the newest commit."""
    return checkout_state(Path(__file__).resolve().parents[2])  # the checkout: adcbench/core/records.py


def checkout_state(root: Path) -> tuple[str | None, bool]:
    """`root`'s commit and whether a tracked file outside `results/` differs from it. Records and
    warm starts land in `results/` while a study runs; they are outputs, not the code that ran."""
    changed = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    return _git(root, "rev-parse", "HEAD"), bool(changed)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(root: Path, *args: str) -> str | None:
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = path.with_name(path.name + ".lock")
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def append_record(path: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Append one line. The file is rewritten to a temporary file and renamed over the original,
    so a crash leaves either the old file or the new one -- never a half line -- and concurrent
    writers (a sweep) serialize on a lock file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=False, allow_nan=False) + "\n"
    with _locked(path):
        old = path.read_bytes() if path.exists() else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            # mkstemp makes the file 0600; the record keeps the file's mode, or the umask's for a new one.
            os.fchmod(fd, stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_umask())
            with os.fdopen(fd, "wb") as fh:
                fh.write(old + line.encode())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return path


def read_records(root: str | os.PathLike, warn: bool = True) -> list[dict[str, Any]]:
    """All records under `root` (a .jsonl file or a folder searched recursively).

    A line that is not a JSON object (a hand edit, a disk-full truncation) is skipped with one
    warning line on stderr naming its file and line; the other records are still used."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(root.rglob("*.jsonl"))
    out = []
    for f in files:
        for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                rec, why = None, f"not a JSON record ({exc.msg})"
            else:
                why = "not a JSON object"
            if not isinstance(rec, dict):
                if warn:
                    print(f"adcbench: warning: {f}:{i}: {why}; line skipped", file=sys.stderr)
                continue
            rec.setdefault("_file", str(f))
            out.append(rec)
    return out
