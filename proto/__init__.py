"""What every tier of Clumon+ shares: frames, codec, transport, link logic.

``__version__`` is the software's version, in one place: HELLOs carry it, ``clumon
--version`` prints it, and the package's metadata is read from it at build time.
A constant rather than ``importlib.metadata.version("clumon")``: that import alone
is ~2 MiB of the agent's RSS.
"""

__version__ = "0.1.0"
