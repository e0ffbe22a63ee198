"""Did the root's previous run stop cleanly? A marker file in its state directory.

Open rollup buckets live in memory and are written when the root stops
(``Store.close``). A root killed with -9, crashed, or stopped while its database
was away could not write them: the rollups of the minutes before lack some
samples (raw data is complete). That must not pass quietly, so each run leaves
``state_dir/running`` and removes it only once its rollups are written; a run
that finds the marker stores an EVENT ``rollups_incomplete`` saying so.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from clumon.proto.frames import Event

log = logging.getLogger("clumon.root")

MARKER = "running"


def begin(state_dir: Path, name: str) -> Event | None:
    """Leave this run's marker; the EVENT to store when the last run left its own."""
    marker = state_dir / MARKER
    previous = None
    if marker.exists():
        try:
            previous = json.loads(marker.read_text())
        except (OSError, ValueError):
            previous = {}
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"pid": os.getpid(), "started": time.time()}))
    except OSError as exc:
        log.warning("cannot write %s (%s): an unclean stop of this run will not be reported", marker, exc)
    if previous is None:
        return None
    started = previous.get("started") if isinstance(previous, dict) else None
    since = f" (it started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))})" if started else ""
    log.warning("the previous run of the root did not stop cleanly%s: rollups before this start may lack "
                "samples; raw data is complete", since)
    return Event("rollups_incomplete", name,
                 f"the previous run of the root{since} stopped without writing its open rollup buckets "
                 "(killed, crashed, or its database was away): rollups of the up to 10 minutes before it "
                 "stopped may lack samples; raw data is complete",
                 {"previous_start": started, "previous_pid": previous.get("pid") if isinstance(previous, dict) else None})


def end(state_dir: Path) -> None:
    """The run stopped with its rollups written: remove its marker."""
    try:
        (state_dir / MARKER).unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove %s (%s): the next start will report an unclean stop", state_dir / MARKER, exc)
