"""Mask changes waiting for agents that could not take them when they were made.

The root remembers each change until its agent confirms it (in ``state_dir``, so a
root restart keeps it too); ``root/ops/masks.py`` sends them and drops them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from clumon.proto import statefile

log = logging.getLogger("clumon.root.masks")


class PendingMasks:
    """Mask changes not yet confirmed by their agent: node -> {control, set_at},
    written atomically to ``path`` after every change (``None``: memory only)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.items: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            try:
                loaded = json.loads(path.read_text())
                self.items = {n: v for n, v in loaded.items()
                              if isinstance(v, dict) and isinstance(v.get("control"), dict)}
            except (OSError, ValueError, AttributeError) as exc:
                log.error("pending masks in %s could not be read (%s): starting without them", path, exc)

    def put(self, nodes: list[str], control: dict, at: float) -> None:
        for n in nodes:
            self.items[n] = {"control": control, "set_at": at}
        self._save()

    def drop(self, nodes: list[str], only_set_at: float | None = None) -> None:
        """Forget the changes of ``nodes`` (only those made at ``only_set_at``, so
        a confirmation of an older change never drops a newer one)."""
        gone = [n for n in nodes if n in self.items
                and (only_set_at is None or self.items[n]["set_at"] == only_set_at)]
        for n in gone:
            del self.items[n]
        if gone:
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            # on the loop, so no fsync: set_mask is rare and the file small; a
            # killed root leaves the old file or the new one, never half of either
            statefile.write_json(self.path, self.items, fsync=False)
        except OSError as exc:
            log.error("pending masks could not be written to %s (%s): kept in memory only", self.path, exc)
