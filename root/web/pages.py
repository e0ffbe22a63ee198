"""The dashboard's pages: which op each one reads, and who may see it.

Every page is the same small HTML shell; the script in ``static/app.js`` draws
it from ``/api/v1/``. A page is served only to a caller who may run the op it
stands on (asked of the op table, the rules of the query socket), so a page the
navigation hides is refused too, and the shell tells the script which pages
the caller has, to hide the others' links.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from aiohttp import web

from clumon.proto import __version__
from clumon.root.ops import OpTable
from clumon.root.web.auth import PRINCIPAL

STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class Page:
    """A page: its route, its title, and the op call that decides who sees it."""

    name: str
    route: str
    title: str
    #: (op, args) from the route's match: the page is refused to whom the op is
    probe: Callable[[dict], tuple[str, dict]]


PAGES = (
    Page("overview", "/", "Overview", lambda m: ("overview", {})),
    Page("rack", "/rack/{name}", "Rack", lambda m: ("grid", {"aggregator": m.get("name", "")})),
    Page("node", "/node/{name}", "Node", lambda m: ("latest", {"node": m.get("name", "")})),
    Page("events", "/events", "Events", lambda m: ("events", {})),
    Page("jobs", "/jobs", "Jobs", lambda m: ("jobs", {})),
    Page("utilization", "/utilization", "Utilization", lambda m: ("utilization", {})),
    Page("logs", "/logs", "Logs", lambda m: ("logs", {})),
)

#: the pages in the navigation (rack and node pages are reached by clicking through)
NAV = ("overview", "events", "logs", "jobs", "utilization")


@functools.lru_cache(maxsize=1)
def _shell_text() -> str:
    return (Path(__file__).parent / "shell.html").read_text(encoding="utf-8")


def shell(me: dict) -> str:
    """The page shell with the caller's facts for the script (escaped for a <script>)."""
    text = _shell_text()
    facts = json.dumps(me).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.replace("{{ME}}", facts).replace("{{VERSION}}", __version__)


def routes(ops: OpTable, tokens_required: bool) -> list[web.RouteDef]:
    """One GET route per page."""
    def handler(page: Page):
        async def serve(request: web.Request) -> web.Response:
            caller = request[PRINCIPAL]
            op, args = page.probe(dict(request.match_info))
            why = ops.refusal(op, args, caller) if op in ops else None
            if why is not None:
                body = shell({"name": caller.name, "role": caller.role, "page": "forbidden",
                              "why": why, "pages": allowed(ops, caller), "logout": tokens_required})
                return web.Response(text=body, content_type="text/html", status=403)
            body = shell({"name": caller.name, "role": caller.role, "page": page.name,
                          "arg": request.match_info.get("name"), "pages": allowed(ops, caller),
                          "logout": tokens_required})
            return web.Response(text=body, content_type="text/html",
                                headers={"Cache-Control": "no-store"})
        return serve

    return [web.get(p.route, handler(p)) for p in PAGES]


def allowed(ops: OpTable, caller) -> list[str]:
    """The pages ``caller`` may open (a rack or node page: some of them)."""
    out = []
    for p in PAGES:
        op, args = p.probe({})
        if p.name == "node":
            op, args = "grid", {}  # node pages: whoever may see some node's figures
        if op in ops and ops.refusal(op, args, caller) is None:
            out.append(p.name)
    return out
