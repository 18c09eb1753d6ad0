"""Private plaintext scratch space for code that truly needs a path (tokenizers, peft, SQLite).

Files are created 0600 in a 0700 directory (``<data_dir>/scratch``), named after the creating
process, and removed when the block ends. ``sweep()`` at start removes what processes that no
longer run left behind (a crash); files of live processes are never touched, so several Afinar
processes may share one data directory. Directories that only need to live for a moment (an
adapter being loaded) prefer ``/dev/shm``, which is memory, never disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

log = logging.getLogger("afinar.scratch")

MEMORY_DIR = Path("/dev/shm")
MEMORY_PREFIX = "afinar-scratch-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_pid(name: str) -> int | None:
    head = name.removeprefix(MEMORY_PREFIX).split("-", 1)[0]
    return int(head) if head.isdigit() else None


class Scratch:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def _prefix(self) -> str:
        return f"{os.getpid()}-"

    def sweep(self) -> int:
        """Remove leftovers of processes that are gone; the number of entries removed."""
        removed = 0
        places = [(self.root, "")]
        if MEMORY_DIR.is_dir():
            places.append((MEMORY_DIR, MEMORY_PREFIX))
        for place, prefix in places:
            try:
                entries = list(place.iterdir())
            except OSError:
                continue
            for entry in entries:
                if prefix and not entry.name.startswith(prefix):
                    continue
                pid = _owner_pid(entry.name)
                if pid is not None and _alive(pid):
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed += 1
        if removed:
            log.info("removed %d stale scratch entries", removed)
        return removed

    @contextlib.contextmanager
    def file(self, chunks: Iterable[bytes], suffix: str = "") -> Iterator[Path]:
        """A private file holding ``chunks``, removed when the block ends (also on error)."""
        fd, name = tempfile.mkstemp(dir=self.root, prefix=self._prefix(), suffix=suffix)  # mode 0600
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
            yield path
        finally:
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def directory(self, *, memory: bool = True) -> Iterator[Path]:
        """A private directory (0700), in memory when ``/dev/shm`` is usable; removed at the end."""
        if memory and MEMORY_DIR.is_dir() and os.access(MEMORY_DIR, os.W_OK):
            path = Path(tempfile.mkdtemp(dir=MEMORY_DIR, prefix=MEMORY_PREFIX + self._prefix()))
        else:
            path = Path(tempfile.mkdtemp(dir=self.root, prefix=self._prefix()))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
