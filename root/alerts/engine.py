"""The root's alert engine: evaluates the rules every ``evaluation_interval``,
moves alerts through their lives, decides what to tell and hands it to the
notifier; keeps alerts and silences in SQL.

Evaluation runs on the loop (it reads the live view, which the loop owns) except
the rollup reads of ``window`` rules and every SQL write, which go to an executor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Callable

from clumon.root.registry import Registry
from clumon.root.storage import Store
from clumon.root.storage import alerts as rows

from . import dispatch
from .conditions import Conditions, window_values
from .dispatch import Matcher, Notice, Silence, SilenceError
from .lifecycle import FIRING, PENDING, RESOLVED, UNROUTABLE, Alert, Book
from .notify import Notifier
from .rules import AlertsConfig, RulesError, load

log = logging.getLogger("clumon.root.alerts")

Note = Callable[[str, str, str, dict], None]  # type, subject, message, attrs


class AlertEngine:
    def __init__(self, path: str | Path, registry: Registry, cache, store: Store, note: Note,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.registry = registry
        self.store = store
        self._note = note
        self._clock = clock
        self.cfg: AlertsConfig = load(self.path)  # RulesError: the root refuses to start
        self.book = Book()
        self.conditions = Conditions(registry, cache, self.book.is_open)
        self.silences: list[Silence] = []
        self.notifier = self._notifier(self.cfg)
        self.evaluations = 0
        self.eval_ms: list[float] = []
        self.notifications_sent = self.notifications_failed = 0
        self.write_errors = 0
        self._ready = asyncio.Event()

    def _notifier(self, cfg: AlertsConfig) -> Notifier:
        return Notifier(cfg.receivers, cfg.smtp, self._delivered, cfg.external_url)

    # --- the file ---------------------------------------------------------------------

    async def reload(self) -> dict:
        """Read the file again; a bad file leaves the rules in force (RulesError)."""
        cfg = load(self.path)
        old = self.notifier
        self.cfg = cfg
        self.notifier = self._notifier(cfg)
        self.notifier.start()
        # what the old channels had not delivered goes on in the new ones; where its
        # receiver is gone it is told again through the new routes
        for name, kind, n, _ in self.notifier.adopt(await old.stop(drain=1.0)):
            self._untell(n, f"receiver {name} ({kind}) removed by the reload; told again through the new routes")
        names = {r.name for r in cfg.rules}
        self.conditions.forget_rules(names)
        self._changed(self.book.drop_rules(names, self._clock()))
        log.info("alert rules reloaded from %s: %d rules, %d receivers", self.path, len(cfg.rules),
                 len(cfg.receivers))
        return {"rules": len(cfg.rules), "receivers": len(cfg.receivers), "routes": len(cfg.routes)}

    # --- running ------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            opened = await loop.run_in_executor(None, lambda: self.store.alerts_sql(lambda c, i: rows.open_alerts(c)))
            self.book.load([Alert(**r) for r in opened])
            await self._load_silences()
        except Exception as exc:  # the database is away: start empty, it is written as it goes
            log.warning("alerts: could not read open alerts back (%s); starting with none", exc)
        self.notifier.start()
        self._ready.set()
        try:
            while True:
                started = time.monotonic()
                try:
                    await self.evaluate_once()
                except Exception:
                    log.exception("alert evaluation failed")
                await asyncio.sleep(max(0.0, self.cfg.evaluation_interval - (time.monotonic() - started)))
        finally:
            await self._stop_telling()

    async def _stop_telling(self) -> None:
        """At stop: what no channel delivered is marked untold and written, so that
        the next start tells it."""
        left = [n for _, _, n, _ in await self.notifier.stop() if not n.delivered]
        for n in left:
            self._untell(n, "")
        if left:
            log.warning("alerts: %d notifications not delivered at stop; told again after the restart", len(left))
            await self._write()

    def _untell(self, n: Notice, why: str) -> None:
        """Take a notice that was not delivered back (unless another channel of its
        receiver delivered it: the receiver heard it)."""
        if n.delivered:
            return
        for fp, state in n.told.items():
            a = self.book.alerts.get(fp)
            before = n.before.get(fp)
            if a is not None and before is not None and a.notified == state and a.notified_at == n.at:
                a.notified, a.notified_at = before
                a.dirty = True
        if why:
            self._delivered(n.receiver, "", False, why, 0)

    def saw_events(self, events: list) -> None:
        self.conditions.saw_events(self.cfg.rules, events)

    async def evaluate_once(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        t0 = time.perf_counter()
        windows = await self._windows(now)
        changes = []
        for rule in self.cfg.rules:
            hits = self.conditions.hits(rule, now, windows.get(rule.name) if windows is not None else None)
            changes += self.book.apply(rule, hits, now, self.conditions.unjudged)
        self._changed(changes)
        self._tell(now)
        await self._write()
        self.book.settled(self.notifier.inflight)
        self.evaluations += 1
        self.eval_ms.append((time.perf_counter() - t0) * 1000)
        del self.eval_ms[:-1000]

    async def _windows(self, now: float) -> dict[str, dict] | None:
        """The rollup figures of the ``window`` rules (None: not readable this time)."""
        wanted = [r for r in self.cfg.rules if r.kind == "series" and r.window]
        if not wanted:
            return {}

        def read(conn, _insert) -> dict[str, dict]:
            return {r.name: window_values(conn, r.series, now - r.window) for r in wanted}

        try:
            return await asyncio.get_running_loop().run_in_executor(None, lambda: self.store.alerts_sql(read))
        except Exception as exc:
            log.warning("alerts: window rules not judged this time: %s", exc)
            return None

    def _changed(self, changes: list) -> None:
        for a, old, new in changes:
            if new == FIRING or (new == RESOLVED and old == FIRING):
                node = a.labels.get("node", "")
                self._note("alert", node or "root", f"{a.rule} {new}: {a.annotations.get('summary', '')}",
                           {"alertname": a.rule, "state": new, "severity": a.labels.get("severity", ""),
                            "fingerprint": a.fingerprint, "value": a.value, "labels": dict(a.labels)})

    def muted(self, now: float) -> dict[str, str]:
        return dispatch.muted(list(self.book.alerts.values()), self.cfg, self.silences, self.registry, now)

    def _tell(self, now: float) -> None:
        mute = self.muted(now)
        alerts = list(self.book.alerts.values())
        folded = dispatch.folded_counts(mute, self.book.alerts)
        for n in dispatch.due(alerts, self.cfg, mute, now, folded, self.cfg.external_url):
            n.at = now
            n.before = {fp: (self.book.alerts[fp].notified, self.book.alerts[fp].notified_at) for fp in n.told}
            sent = self.notifier.send(n)
            for fp, state in n.told.items():
                a = self.book.alerts.get(fp)
                if a is None:
                    continue
                if sent:
                    a.notified, a.notified_at, a.dirty = state, now, True
                    a.notifications += 1
                elif state == RESOLVED:  # a receiver with no way to reach: nobody to tell
                    a.notified, a.dirty = UNROUTABLE, True
        for a in alerts:  # told firing, resolved, and no route takes it since a reload
            if a.state == RESOLVED and a.notified == FIRING and a.fingerprint not in mute \
                    and dispatch.route_of(self.cfg, a.labels) is None:
                a.notified, a.dirty = UNROUTABLE, True

    async def _write(self) -> None:
        retired = list(self.book.retired)
        dirty = retired + [a for a in self.book.alerts.values() if a.dirty]
        if not dirty:
            return
        batch = [a.as_dict() for a in dirty]
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.store.alerts_sql(lambda c, ins: rows.write(c, ins, batch), write=True))
        except Exception as exc:  # kept dirty: written at the next turn
            self.write_errors += 1
            log.warning("alerts: writing %d alerts failed (kept, retried): %s", len(batch), exc)
            return
        for a in dirty:
            a.dirty = False
        del self.book.retired[:len(retired)]

    def _delivered(self, receiver: str, channel: str, ok: bool, detail: str, attempts: int) -> None:
        if ok:
            self.notifications_sent += 1
            return
        self.notifications_failed += 1
        self._note("alert", "root", f"notifying {receiver} by {channel} failed (attempt {attempts}): {detail}",
                   {"what": "delivery_failed", "receiver": receiver, "channel": channel, "detail": detail,
                    "attempts": attempts})

    # --- silences -----------------------------------------------------------------------

    async def _load_silences(self) -> None:
        now = self._clock()
        got = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.store.alerts_sql(lambda c, i: rows.silences(c, now)))
        self.silences = [Silence(r["id"], tuple(Matcher.parse(m) for m in r["matchers"]), r["starts"], r["ends"],
                                 r["created_by"], r["reason"]) for r in got]

    async def add_silence(self, matchers: list[str], seconds: float, reason: str, by: str) -> dict:
        parsed = tuple(Matcher.parse(m) for m in matchers)  # SilenceError: said to the caller
        if not parsed:
            raise SilenceError("a silence needs at least one matcher")
        now = self._clock()
        texts = [m.text() for m in parsed]
        sid = await asyncio.get_running_loop().run_in_executor(None, lambda: self.store.alerts_sql(
            lambda c, i: rows.add_silence(c, texts, now, now + seconds, by, reason), write=True))
        s = Silence(sid, parsed, now, now + seconds, by, reason)
        self.silences.append(s)
        matched = [a.fingerprint for a in self.book.alerts.values() if s.matches(a.labels)]
        return {**s.as_dict(), "matching_alerts": len(matched)}

    async def expire_silence(self, silence_id: int) -> bool:
        now = self._clock()
        done = await asyncio.get_running_loop().run_in_executor(None, lambda: self.store.alerts_sql(
            lambda c, i: rows.expire_silence(c, silence_id, now), write=True))
        self.silences = [s if s.id != silence_id else Silence(s.id, s.matchers, s.starts, min(s.ends, now),
                                                              s.created_by, s.reason) for s in self.silences]
        return done

    def active_silences(self) -> list[dict]:
        now = self._clock()
        self.silences = [s for s in self.silences if s.ends > now]
        return [s.as_dict() for s in self.silences]

    # --- views --------------------------------------------------------------------------

    def open_alerts(self) -> list[dict]:
        mute = self.muted(self._clock())
        return [{**a.as_dict(), "muted": mute.get(a.fingerprint, "")} for a in self.book.alerts.values()]

    def figures(self) -> dict[str, Any]:
        counts = self.book.counts()
        ms = sorted(self.eval_ms)
        return {"alerts_firing": counts[FIRING], "alerts_pending": counts[PENDING],
                "notifications_sent": self.notifications_sent, "notifications_failed": self.notifications_failed,
                "notifications_queued": self.notifier.queued(), "alert_rules": len(self.cfg.rules),
                "alert_eval_ms": round(ms[len(ms) // 2], 3) if ms else None}

    def metrics_lines(self) -> list[str]:
        """``ALERTS{alertname,alertstate,...} 1`` for pending and firing alerts, as Prometheus shows its own."""
        out = []
        for a in self.book.alerts.values():
            if a.state not in (PENDING, FIRING):
                continue
            labels = {**a.labels, "alertstate": a.state}
            body = ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(labels.items()))
            out.append(f"ALERTS{{{body}}} 1")
        return out


def _esc(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


__all__ = ["AlertEngine", "RulesError", "SilenceError"]
