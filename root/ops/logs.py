"""The ``logs`` op: stored log lines by node glob, source, regex and time.

The database is read in an executor, never on the loop. ``follow`` is the
client's: it asks again with ``after`` set to the ``cursor`` of the last answer
and gets only the chunks stored since.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import time

from clumon.root.ops.base import Op, QueryError, arg, time_arg
from clumon.root.registry import Registry
from clumon.root.storage import Store

MAX_LIMIT = 100_000


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


class LogOps:
    """``logs`` over the store's log tables."""

    def __init__(self, registry: Registry, store: Store):
        self.registry = registry
        self.store = store

    def ops(self) -> list[Op]:
        return [Op("logs", self.logs, targets=lambda a: [a["node"]] if isinstance(a.get("node"), str) else None,
                   rows=lambda result, mine: {**result, "lines": [x for x in result["lines"] if mine(x["node"])]})]

    async def logs(self, args: dict) -> dict:
        """Lines oldest first: the newest ``limit`` in [since, until], or with
        ``after`` (a cursor from an earlier answer) those stored since."""
        node = arg(args, "node", str, None)
        source = arg(args, "source", str, None)
        grep = arg(args, "grep", str, None)
        since = time_arg(args, "since", 3600.0)
        until = time_arg(args, "until", 0.0) if args.get("until") else time.time() + 60.0
        limit = arg(args, "limit", int, 200, check=lambda v: 1 <= v <= MAX_LIMIT)
        after = arg(args, "after", int, 0, check=lambda v: v >= 0)
        if grep:
            try:
                re.compile(grep)
            except re.error as exc:
                raise QueryError("bad_args", f"argument 'grep': not a regex ({exc}): {grep!r}") from None
        nodes = None
        if node:
            nodes = ([n for n in self.registry.nodes if fnmatch.fnmatchcase(n, node)] if _has_glob(node) else [node])
        loop = asyncio.get_running_loop()
        got = await loop.run_in_executor(None, lambda: self.store.log_lines(
            nodes=nodes, source=source, since=since, until=until, grep=grep or None, limit=limit, after=after))
        return {"since": since, "until": until, **got}
