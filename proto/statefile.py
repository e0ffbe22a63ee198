"""Small JSON files in a daemon's state directory, replaced whole.

A crash while writing must never leave half a file behind: the value goes to a
temporary file beside the target, which then replaces it in one rename.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, value: Any, fsync: bool = True) -> None:
    """Replace ``path`` with ``value`` as JSON, atomically; ``fsync`` also makes
    it survive a power loss (blocking: off the loop, or pass ``fsync=False``).
    Creates the directory; raises ``OSError``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        json.dump(value, fh, indent=1)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
