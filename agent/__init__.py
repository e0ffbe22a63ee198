"""The Clumon+ node agent."""

from clumon.proto import __version__  # noqa: F401  (re-exported: HELLO and inventory)
