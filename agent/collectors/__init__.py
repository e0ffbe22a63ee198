"""Collectors of the Clumon+ agent: /proc sources turned into named samples.

Public face: ``Sample``, ``Collector``, ``default_collectors``, ``inventory``
and ``SOURCES`` (the known source names).
"""

from .base import Collector, Sample
from .inventory import inventory
from .registry import SOURCES, default_collectors

__all__ = ["Collector", "Sample", "SOURCES", "default_collectors", "inventory"]
