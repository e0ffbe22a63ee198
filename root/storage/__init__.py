"""The root's storage: one ``Store`` over SQLite or PostgreSQL, chosen by URL.

The face the rest of the root, the tests and the benchmarks use; the modules
behind it (engine, schema, history, rollups, compaction) are its own business.
"""

from .engine import StoreError, StoreUnavailable, make_engine
from .history import HistoryConfig
from .logs import LogRow
from .rows import DictionaryRow, EventRow, FrameRow, NodeRow, StateRow
from .store import Store

__all__ = [
    "DictionaryRow", "EventRow", "FrameRow", "HistoryConfig", "LogRow", "NodeRow", "StateRow", "Store",
    "StoreError", "StoreUnavailable", "make_engine",
]
