"""Python collectors from other packages, registered under the entry-point group
``clumon.collectors``.

A package declares, in its ``pyproject.toml``::

    [project.entry-points."clumon.collectors"]
    gpfs = "clumon_gpfs:GpfsCollector"

The entry point names a callable taking no arguments (a class qualifies) that
returns a collector: an object with ``name``, ``default_interval`` and
``collect() -> list[Sample]`` (see ``clumon.agent.collectors.base``). It runs in
the agent's collecting thread at its own interval (``intervals.NAME`` in the
agent's TOML overrides ``default_interval``). What it returns is checked; an
exception or garbage makes it a failing source (an EVENT once, when it starts
failing) and never stops the other sources. A plugin that cannot be loaded is
reported the same way and left out.

``importlib.metadata`` (with ``email``, ``zipfile``, ``csv``...) is ~2 MiB of
RSS, so it is imported only when some distribution on ``sys.path`` declares the
group at all; on most nodes none does.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

log = logging.getLogger("clumon.agent.plugins")

GROUP = "clumon.collectors"


def entry_point_collectors(taken: set[str]) -> tuple[list[Any], list[tuple[str, dict]]]:
    """(collectors, [(message, attrs) of plugins that failed to load])."""
    collectors: list[Any] = []
    errors: list[tuple[str, dict]] = []
    if not group_declared(GROUP):
        return collectors, errors
    from importlib.metadata import entry_points

    names = set(taken)
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            collector = ep.load()()
            name = collector.name
            if not isinstance(name, str) or not name or not callable(collector.collect):
                raise TypeError("not a collector: it needs a str 'name' and a 'collect()' method")
            float(getattr(collector, "default_interval", 1.0))
            if name in names:
                raise ValueError(f"source name {name!r} is already taken")
        except Exception as exc:  # a plugin's bug must not stop the agent
            msg = f"plugin {ep.name} ({ep.value}) not loaded: {type(exc).__name__}: {exc}"
            log.warning("%s", msg)
            errors.append((msg, {"plugin": ep.name, "kind": "entry_point", "reason": "load"}))
            continue
        names.add(name)
        collectors.append(collector)
        log.info("plugin collector %s from %s", name, ep.value)
    return collectors, errors


def group_declared(group: str, path: list[str] | None = None) -> bool:
    """Whether an ``entry_points.txt`` on ``path`` (``sys.path``) may declare ``group``.

    A cheap look at the same files ``importlib.metadata`` reads. It errs towards
    yes: a path entry that is a file (a zip, which may hold eggs) answers yes.
    """
    marker = f"[{group}]"
    for entry in sys.path if path is None else path:
        entry = entry or "."
        if os.path.isfile(entry):
            return True
        try:
            with os.scandir(entry) as it:
                infos = [d.path for d in it if d.name.endswith((".dist-info", ".egg-info"))]
        except OSError:
            continue
        for info in infos:
            try:
                with open(os.path.join(info, "entry_points.txt"), encoding="utf-8", errors="replace") as fh:
                    if marker in fh.read():
                        return True
            except OSError:
                continue
    return False
