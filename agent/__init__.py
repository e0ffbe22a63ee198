"""The Clumon+ node agent."""

#: The software version sent in HELLO. A constant rather than
#: ``importlib.metadata.version("clumon")``: that import alone is ~2 MiB of the
#: agent's RSS. tests/unit/test_collectors_registry.py keeps it equal to the
#: installed distribution's version.
__version__ = "0.1.0"
