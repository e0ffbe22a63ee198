"""Shared fixtures. Every process a test starts is stopped by its fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import Tree


@pytest.fixture
def tree(tmp_path: Path):
    """Start daemons with ``tree.root()``, ``tree.aggregator()``, ``tree.agent()``."""
    t = Tree(tmp_path)
    yield t
    t.stop_all()
