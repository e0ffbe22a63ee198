"""Ops of the alert engine: ``alerts`` (open ones, and history), ``silence``
(add, list, expire) and ``rules_reload``."""

from __future__ import annotations

import asyncio
import math

from clumon.root.alerts.dispatch import SilenceError
from clumon.root.alerts.engine import AlertEngine
from clumon.root.alerts.rules import RulesError
from clumon.root.ops.base import ADMIN, OPERATOR, SITE, Op, QueryError, arg, time_arg
from clumon.root.storage import alerts as rows

STATES = ("pending", "firing", "resolved")


class AlertOps:
    def __init__(self, engine: AlertEngine | None):
        self.engine = engine

    def ops(self) -> list[Op]:
        return [Op("alerts", self.alerts, rows=_alert_rows),
                Op("silence", self.silence, OPERATOR, mutating=True, targets=_silence_targets),
                Op("rules_reload", self.reload, ADMIN, mutating=True)]

    def _on(self) -> AlertEngine:
        if self.engine is None:
            raise QueryError("alerts_off", "no alert rules: give the root alerts = \"FILE\" in its config")
        return self.engine

    async def alerts(self, args: dict) -> dict:
        """Open alerts (pending, firing, resolved still to be told) with why any is
        muted; with ``since``, the stored history too; and the silences in force."""
        e = self._on()
        state = arg(args, "state", str, None, check=lambda v: v in STATES)
        since = time_arg(args, "since", 0.0) if "since" in args else None
        limit = arg(args, "limit", int, 1000, check=lambda v: 0 < v <= 100_000)
        open_ = [a for a in e.open_alerts() if state is None or a["state"] == state]
        out = {"alerts": sorted(open_, key=lambda a: (a["state"] != "firing", -(a["fired_at"] or a["started"]))),
               "silences": e.active_silences()}
        if since is not None or state == "resolved":
            start = since if since is not None else 0.0
            loop = asyncio.get_running_loop()
            past = await loop.run_in_executor(None, lambda: e.store.alerts_sql(
                lambda c, i: rows.history(c, start, state, limit)))
            seen = {(a["fingerprint"], a["started"]) for a in out["alerts"]}
            out["alerts"] += [a for a in past if (a["fingerprint"], a["started"]) not in seen]
        out["alerts"] = out["alerts"][:limit]
        return out

    async def silence(self, args: dict) -> dict | list:
        e = self._on()
        action = arg(args, "action", str, check=lambda v: v in ("add", "list", "expire"))
        if action == "list":
            return e.active_silences()
        if action == "expire":
            sid = arg(args, "id", int)
            if not await e.expire_silence(sid):
                raise QueryError("unknown_silence", f"no silence {sid} in force")
            return {"expired": sid}
        matchers = arg(args, "matchers", list, check=lambda v: v and all(isinstance(m, str) for m in v))
        seconds = arg(args, "duration", (int, float), check=lambda v: math.isfinite(v) and 0 < v <= 366 * 86400)
        reason = arg(args, "reason", str, "")
        by = arg(args, "by", str, "")
        try:
            return await e.add_silence(matchers, float(seconds), reason, by)
        except SilenceError as exc:
            raise QueryError("bad_args", str(exc)) from None

    async def reload(self, args: dict) -> dict:
        e = self._on()
        try:
            return await e.reload()
        except RulesError as exc:
            raise QueryError("bad_rules", f"{exc} (the rules in force stay)") from None


def _alert_rows(result: dict, mine) -> dict:
    """An operator's ``alerts``: those of their nodes."""
    return {**result, "alerts": [a for a in result.get("alerts", []) if mine(a.get("labels", {}).get("node", ""))]}


def _silence_targets(args: dict):
    """The nodes a silence names (``node=NAME`` matchers); listing is site-wide;
    anything else (no node named, expiring) names every node: admins only."""
    action = args.get("action")
    if action == "list":
        return SITE
    if action != "add":
        return None
    matchers = args.get("matchers") if isinstance(args.get("matchers"), list) else []
    nodes = [m.split("=", 1)[1].strip().strip('"') for m in matchers
             if isinstance(m, str) and m.replace(" ", "").startswith("node=") and "=~" not in m]
    return nodes or None
