"""Index versions on disk: each is a complete directory; `CURRENT` names the live one.

A new version is written beside the old and published by atomically replacing `CURRENT`, so a
reader (or a crash) only ever sees a complete version; the previous one is kept for rollback.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

KEEP_VERSIONS = 2


class IndexVersions:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @property
    def _pointer(self) -> Path:
        return self.root / "CURRENT"

    def current(self) -> Path | None:
        try:
            name = self._pointer.read_text().strip()
        except FileNotFoundError:
            return None
        path = self.root / name
        return path if path.is_dir() else None

    def history(self) -> list[str]:
        try:
            return [line for line in (self.root / "HISTORY").read_text().split() if line]
        except FileNotFoundError:
            return []

    def new_dir(self) -> Path:
        existing = [int(p.name[1:]) for p in self.root.glob("v*") if p.name[1:].isdigit()]
        path = self.root / f"v{max(existing, default=0) + 1:04d}"
        path.mkdir()
        return path

    def publish(self, path: Path, keep: int = KEEP_VERSIONS) -> None:
        for f in path.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        history = [*self.history(), path.name]
        self._write_atomic(self.root / "HISTORY", "\n".join(history) + "\n")
        self._write_atomic(self._pointer, path.name)
        self.prune(keep)

    def rollback(self) -> Path:
        """Make the previous version current again."""
        history = self.history()
        if len(history) < 2 or not (self.root / history[-2]).is_dir():
            raise FileNotFoundError("no previous index version to roll back to")
        history.pop()
        self._write_atomic(self.root / "HISTORY", "\n".join(history) + "\n")
        self._write_atomic(self._pointer, history[-1])
        return self.root / history[-1]

    def prune(self, keep: int) -> None:
        live = set(self.history()[-keep:])
        current = self.current()
        for path in self.root.glob("v*"):
            if path.is_dir() and path.name not in live and (current is None or path != current):
                shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def _write_atomic(path: Path, text: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
