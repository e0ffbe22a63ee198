"""The root's own health, as series stored like a node's (and shown by ``health``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clumon.proto import __version__
from clumon.proto.frames import Data, Hello

if TYPE_CHECKING:  # pragma: no cover
    from clumon.root.service import Root

#: series name -> key of Root.health()
SERIES = {
    "clumon_root_frames_in_total": "frames_in",
    "clumon_root_bytes_in_total": "bytes_in",
    "clumon_root_decode_errors_total": "decode_errors",
    "clumon_root_frames_stored_total": "frames_stored",
    "clumon_root_samples_in_total": "samples_in",
    "clumon_root_frames_refused_total": "frames_refused",
    "clumon_root_frames_accepted_total": "frames_accepted",
    "clumon_root_own_frames_stored_total": "own_frames_stored",
    "clumon_root_frames_rejected_total": "frames_rejected",
    "clumon_root_rollup_rows_rejected_total": "rollup_rows_rejected",
    "clumon_root_commit_errors_total": "commit_errors",
    "clumon_root_pending_frames": "pending_frames",
    "clumon_root_commits_total": "commits",
    "clumon_root_last_commit_seconds": "last_commit_ms",
    "clumon_root_database_ok": "database_ok",
    "clumon_root_nodes": "nodes",
    "clumon_root_queries_total": "queries",
    "clumon_root_ingest_samples_per_second": "samples_per_s",
    "clumon_root_frames_compacted_total": "frames_compacted",
    "clumon_root_raw_oldest_age_seconds": "raw_oldest_age_s",
}


def hello(root: "Root") -> Hello:
    return Hello(1, tuple(SERIES), {"host": root.name, "software_version": __version__}, "root")


def sample(root: "Root") -> Data:
    figures = root.health()
    values = []
    for name, key in SERIES.items():
        v = figures.get(key)
        if key == "last_commit_ms" and v is not None:
            v = v / 1000.0
        values.append(float(v) if isinstance(v, (int, float)) else None)
    return Data.from_values(1, values)
