"""Shared fixtures. Every process a test starts is stopped by its fixture."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import Tree


@pytest.fixture
def tree(tmp_path: Path):
    """Start daemons with ``tree.root()``, ``tree.aggregator()``, ``tree.agent()``."""
    t = Tree(tmp_path)
    yield t
    t.stop_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a PostgreSQL test that skips (no server) is a failure."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") == "true":
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if "CLUMON_TEST_PG_URL" in reason:
            report.outcome = "failed"
            report.longrepr = f"CI=true and a PostgreSQL test skipped: {reason}"
