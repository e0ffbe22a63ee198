"""The mask set a CONTROL put in force, kept in the agent's state directory.

The file (``masks.json``) exists only while run-time masks are in force; without
it the agent uses the masks of its TOML. It is written atomically (a temporary
file, fsync, rename) so a crash never leaves half a mask set. An unreadable file
is logged and ignored: the TOML masks apply, and nothing stops the agent.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from clumon.proto.maskrules import MaskError, MaskSet
from clumon.proto import statefile

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
    statefile.write_json(Path(state_dir) / FILE_NAME, {**masks.as_dict(), "set_at": set_at})


def clear(state_dir: Path) -> None:
    """Go back to the configured masks at the next start too."""
    try:
        (Path(state_dir) / FILE_NAME).unlink()
    except FileNotFoundError:
        pass
