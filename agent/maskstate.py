"""The mask set a CONTROL put in force, kept in the agent's state directory.

The file (``masks.json``) exists only while run-time masks are in force; without
it the agent uses the masks of its TOML. It is written atomically (a temporary
file, fsync, rename) so a crash never leaves half a mask set. An unreadable file
is logged and ignored: the TOML masks apply, and nothing stops the agent.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from clumon.agent.masks import MaskError, MaskSet

log = logging.getLogger("clumon.agent.masks")

FILE_NAME = "masks.json"


def load(state_dir: Path) -> tuple[MaskSet, float] | None:
    """(mask set, time it was set) from the state directory, or None."""
    path = Path(state_dir) / FILE_NAME
    try:
        data = json.loads(path.read_text())
        return MaskSet.from_dict(data), float(data.get("set_at", 0.0))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, AttributeError, MaskError) as exc:
        log.warning("ignoring %s (the configured masks apply): %s", path, exc)
        return None


def save(state_dir: Path, masks: MaskSet, set_at: float) -> None:
    """Keep ``masks`` so they survive a restart (blocking: call from an executor)."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / FILE_NAME
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        json.dump({**masks.as_dict(), "set_at": set_at}, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def clear(state_dir: Path) -> None:
    """Go back to the configured masks at the next start too."""
    try:
        (Path(state_dir) / FILE_NAME).unlink()
    except FileNotFoundError:
        pass
