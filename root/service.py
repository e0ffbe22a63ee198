"""The root daemon: children in, SQL out, queries answered."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import zmq.asyncio

from clumon.proto import curve, runtime, transport
from clumon.proto.downlink import Downlink
from clumon.proto.frames import Ack, Control, Frame, Kind
from clumon.proto.liveness import Transition
from clumon.proto.tree import LatestCache, Routes, walk
from clumon.root import health, http
from clumon.root.httpauth import HttpAuth
from clumon.root.config import RootConfig
from clumon.root.storage import HistoryConfig
from clumon.root.ingest import Ingest
from clumon.root.downward import Downward
from clumon.root.ops import OpTable
from clumon.root.ops.base import ADMIN, Op, arg, time_arg
from clumon.root.ops.masks import agents_under
from clumon.root.ops.stored import recent_events
from clumon.root.roles import LEGACY_ADMIN, LEGACY_READER, Principal, Roles, foreign_node
from clumon.root.alerts.engine import AlertEngine
from clumon.root.ops.admin import AdminOps
from clumon.root.ops.alerts import AlertOps
from clumon.root.ops.live import LiveOps
from clumon.root.ops.masks import MaskOps
from clumon.root.ops.reads import ReadOps
from clumon.root.ops.watch import WatchOps
from clumon.root.ops.sched import SchedOps
from clumon.root.ops.logs import LogOps
from clumon.root.ops.stored import StoredOps
from clumon.root.registry import Registry
from clumon.root.server import MAX_REQUEST_BYTES, QUERY_HWM, QueryServer, caller_role
from clumon.root.storage import Store
from clumon.root.web import WebServer

log = logging.getLogger("clumon.root")


def prepare_database(url: str) -> None:
    """Create the directory of a SQLite file so a fresh install just works."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def history_config(cfg: RootConfig) -> HistoryConfig:
    """The store's rollup, compaction and retention settings from the root's config."""
    defaults = HistoryConfig()
    return HistoryConfig(flush_seconds=cfg.rollup_flush, raw_window=cfg.compact_after,
                         retention={**defaults.retention, **cfg.retention})


class Root:
    """The site's root: one Downlink, one Ingest, one query server."""

    def __init__(self, cfg: RootConfig, ctx: zmq.asyncio.Context, store: Store, startup_events: tuple = ()):
        self.cfg = cfg
        self.name = cfg.name
        self.incarnation = time.time_ns()
        self.started = time.time()
        self.store = store
        #: EVENTs about the root itself to store once it runs (an unclean last stop)
        self.startup_events = tuple(startup_events)
        self.registry = Registry(store.nodes())
        self.cache = LatestCache()
        for d in store.dictionaries():
            self.cache.dictionaries[(d.node, d.incarnation, d.dict_version)] = d.series
        self.routes = Routes()
        for n in self.registry.nodes.values():
            hop = n.path.split("/")[0] if n.path else n.name
            self.routes.learn(n.name, hop)
        #: CurveZMQ (``[curve]``): the keys of children and clients, checked by ZAP
        self.curve = curve.Server(ctx, cfg.curve) if cfg.curve.on else None
        self.roles = Roles(cfg.roles) if cfg.roles else None
        #: frames refused because their node lives in another subtree
        self.subtree_refused = 0
        self._subtree_told: dict[str, float] = {}
        self.downlink = Downlink(ctx, cfg.listen, self.name, self.incarnation, self._from_child,
                                 self._transitions, cfg.heartbeat_interval, cfg.down_after,
                                 cfg.max_frame_bytes, lambda: self.incarnation, self._duplicate,
                                 curve=self.curve, on_refused=self._auth_refused)
        self.ingest = Ingest(store, self.registry, self.cache, self._send_ack, self._ask_hello,
                             self.name, self.incarnation, cfg.commit_interval, cfg.commit_max_frames,
                             cfg.max_pending_frames, cfg.max_waiting_frames, cfg.max_waiting_bytes)
        self.downward = Downward(self.registry, self.routes, self.downlink.send, self.name)
        self.masks = MaskOps(self.downward, cfg.state_dir, retry_every=cfg.heartbeat_interval)
        self.ops = OpTable([*LiveOps(self.registry, self.cache, store).ops(),
                            *StoredOps(self.registry, store, self.cache).ops(),
                            *LogOps(self.registry, store).ops(),
                            *SchedOps(self.registry, self.cache, store).ops(),
                            *ReadOps(self.downward).ops(), *WatchOps(self.downward).ops(), *self.masks.ops(),
                            *AdminOps(self.health, self.forget, self.registry).ops(),
                            Op("audit", self._audit_trail, ADMIN)])
        self.ops.resolve = self._resolve
        self.ops.audit = self._audit
        self.query_conn = transport.router(ctx, cfg.query, hwm=QUERY_HWM, max_bytes=MAX_REQUEST_BYTES,
                                           curve=self.curve)
        self.server = QueryServer(self.query_conn, self.ops, cfg.request_timeout,
                                  self._caller if self.curve is not None else None)
        self.inner_errors = 0
        #: the HTTP server: pages, /api/v1/ and /metrics (``http`` in the config)
        self.web: WebServer | None = None
        self.alerts: AlertEngine | None = None
        self._reloads: set[asyncio.Task] = set()
        if cfg.alerts:  # RulesError here: the root does not start (one line, exit 2)
            self.alerts = AlertEngine(cfg.alerts, self.registry, self.cache, store, self.ingest.note)
            self.ingest.on_stored_events = self.alerts.saw_events
        self.ops.add(*AlertOps(self.alerts).ops())

    # --- children ----------------------------------------------------------------------

    def _bad_inner(self, sender: str, why: str) -> None:
        self.inner_errors += 1
        self.downlink.decode_errors[sender] += 1

    def _from_child(self, hop: str, frame: Frame, data: bytes) -> None:
        for path, inner, raw in walk(frame, (), data, self._bad_inner, self.cfg.max_frame_bytes):
            if path and self.curve is not None and not self._in_subtree(path, inner):
                continue
            self.routes.learn(inner.sender, hop)
            if inner.kind is Kind.EVENT and inner.body.type == "state":
                self.routes.learn(inner.body.subject, hop)  # its parent reports it: same way down
            if inner.stored:
                self.ingest.accept(hop, path, inner, raw)
            elif inner.kind is Kind.REPLY:
                self.downward.reply(inner.body)

    # --- security -----------------------------------------------------------------------

    def _in_subtree(self, path: tuple[str, ...], inner: Frame) -> bool:
        """Whether the aggregators of ``path`` may speak for ``inner`` (the rule:
        ``roles.foreign_node``); a refusal is counted and told once a minute per peer."""
        where = "/".join(path)
        foreign = foreign_node(self.registry, path, inner)
        if foreign is None:
            return True
        name, n = foreign
        self.subtree_refused += 1
        now = time.monotonic()
        if now - self._subtree_told.get(path[0], -1e9) >= 60.0:
            self._subtree_told[path[0]] = now
            log.error("refused a frame of %s forwarded by %s: the node lives under %s", name, where,
                      n.path or "the root")
            self.ingest.note("auth_refused", path[0],
                             f"{path[0]} forwarded a frame of {name}, which lives under {n.path or 'the root'}",
                             {"peer": path[0], "node": name, "path": where, "placed": n.path,
                              "why": "outside_subtree"})
        return False

    def _auth_refused(self, peer: str, key: str, why: str) -> None:
        self.ingest.note("auth_refused", peer, f"refused {peer}: {why}", {"peer": peer, "key": key, "why": why})

    def _caller(self, frame) -> Principal:
        """The caller of a query on the CurveZMQ socket: its key's role (or, with no
        roles file, the rule of before keys by its address)."""
        name = self.curve.name_of(frame)
        if self.roles is not None:
            return self.roles.principal(name)
        try:
            peer = frame.get("Peer-Address")
        except Exception:
            peer = None
        return Principal(name or "?", LEGACY_ADMIN if caller_role(peer) == ADMIN else LEGACY_READER)

    def _resolve(self, target) -> list[tuple[str, str]]:
        if not isinstance(target, str) or not target:
            return []
        found, _ = self.downward.resolve([target])
        names = list(dict.fromkeys([*found, *agents_under(self.registry, found)]))
        return [(n, self.registry.nodes[n].path) for n in names if n in self.registry.nodes]

    def _audit(self, caller, op: str, args: dict, outcome: str) -> None:
        shown = {k: v for k, v in args.items() if k not in ("timeout",)}
        targets = [t for t in (args.get("node"), args.get("target")) if isinstance(t, str)]
        if isinstance(args.get("targets"), list):
            targets += [t for t in args["targets"] if isinstance(t, str)]
        self.ingest.note("audit", caller.name, f"{caller.describe()} {op}: {outcome}",
                         {"who": caller.name, "role": caller.role, "op": op, "args": _plain(shown),
                          "targets": targets, "outcome": outcome})
        if outcome.startswith("forbidden"):
            log.warning("refused %s to %s: %s", op, caller.describe(), outcome)

    async def _audit_trail(self, args: dict) -> list[dict]:
        since = time_arg(args, "since", 86400.0)
        limit = arg(args, "limit", int, 1000, check=lambda v: 0 < v <= 100000)
        rows = await recent_events(self.store, None, "audit", since, limit)
        rows += await recent_events(self.store, None, "auth_refused", since, limit)
        return sorted(rows, key=lambda e: e["ts"], reverse=True)[:limit]

    def _duplicate(self, name: str, older: int, newer: int) -> None:
        self.ingest.note("duplicate_name", name, f"two live processes are named {name}: the newer one's frames "
                         "are kept, the older one's refused until it stops",
                         {"older_incarnation": older, "newer_incarnation": newer})

    def _send_ack(self, hop: str, ack: Ack) -> None:
        self.downlink.send_ack(hop, ack)

    def _ask_hello(self, hop: str, node: str) -> None:
        self.downlink.send(hop, Control("resend_hello", node, {}))

    def _transitions(self, transitions: list[Transition]) -> None:
        for t in transitions:
            log.info("child %s: %s -> %s", t.subject, t.old, t.new)
            role = self.downlink.role_of(t.subject)
            self.ingest.own_event("state", t.subject, t.old, t.new,
                                  {"at": t.at, "incarnation": t.incarnation, "last_heard": t.last_heard,
                                   "role": role or "agent"})
            event = self.registry.transition(t.subject, t.new, t.at, t.incarnation, role, "")
            if event:
                self.ingest.own_event("unreachable", *event)

    def forget(self, node: str) -> bool:
        known = self.registry.forget(node)
        self.cache.forget(node)
        self.routes.forget(node)
        self.downlink.liveness.forget(node)
        if known:
            self.store.forget(node)
        return known

    # --- figures -----------------------------------------------------------------------

    def health(self) -> dict:
        d, i = self.downlink, self.ingest
        return {
            "name": self.name,
            "incarnation": self.incarnation,
            "uptime_s": time.time() - self.started,
            "frames_in": d.frames_in,
            "bytes_in": d.bytes_in,
            "decode_errors": sum(d.decode_errors.values()),
            "decode_errors_by_sender": dict(d.decode_errors),
            "frames_accepted": i.frames_accepted,
            "frames_stored": i.frames_stored,
            "own_frames_stored": i.own_frames_stored,
            "samples_in": i.samples_in,
            "log_lines_in": i.log_lines_in,
            "log_lines_stored": self.store.logs.lines_stored,
            "log_lines_duplicate": self.store.logs.lines_duplicate,
            "frames_refused": i.frames_refused,
            "frames_rejected": i.frames_rejected,
            "rollup_rows_rejected": self.store.rollup_rows_rejected,
            "commit_errors": i.commit_errors,
            "pending_frames": i.pending,
            "commits": i.commits,
            "last_commit_ms": i.last_commit_ms,
            "database_ok": i.db_ok,
            "database_error": i.db_error,
            "nodes": len(self.registry.nodes),
            "queries": self.server.requests,
            **i.rates(),
            **self._compaction(),
            **(self.alerts.figures() if self.alerts is not None else {}),
            **self._security(),
        }

    def _security(self) -> dict:
        http_refused = ({"http_refused": self.web.auth.refused, "http_api_requests": self.web.requests}
                        if self.web is not None else {})
        if self.curve is None:
            return {"curve": False, **http_refused}
        return {"curve": True, **http_refused, "handshakes_refused": self.curve.handshake_failures,
                "unknown_keys_refused": self.curve.ring.refused,
                "auth_refused": self.downlink.auth_refused, "subtree_refused": self.subtree_refused,
                "authorized_keys": len(self.curve.ring.keys)}

    def _compaction(self) -> dict:
        """Is compaction keeping up: its thread, its work, its last error, and the
        age of the oldest frame not yet compacted (it grows past ~35 min when not)."""
        c = self.store.compactor
        oldest = list(self.store.history.raw_oldest.values())  # one C call: safe beside the thread
        return {"compaction_running": c.running, "frames_compacted": c.frames_compacted,
                "compaction_busy_s": round(c.busy_seconds, 3), "compaction_error": c.last_error,
                "raw_oldest_age_s": round(time.time() - min(oldest), 1) if oldest else None}

    # --- life cycle --------------------------------------------------------------------

    async def _timers(self) -> None:
        next_health = time.monotonic()
        self.ingest.own_frame(health.hello(self))
        for event in self.startup_events:
            self.ingest.own_frame(event)
        while True:
            await asyncio.sleep(min(1.0, self.cfg.heartbeat_interval / 2))
            self.downlink.tick()
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + self.cfg.health_interval
                self.ingest.own_frame(health.sample(self))

    def _metrics_snapshot(self):
        alerts = self.alerts.metrics_lines() if self.alerts is not None else []
        return http.snapshot(self.registry, self.cache, self.cfg.metrics_stale_after), self.health(), alerts

    def _http_caller(self, name: str, peer: str | None) -> Principal:
        """The caller of an HTTP request: its token's name, mapped to a role as a
        client key's name is on the query socket. Without tokens the port is on
        loopback and the caller the local admin; with tokens and no roles file, the
        rule of before roles by address (loopback admin, others readers)."""
        if not self.web.auth.required:
            return Principal("local", LEGACY_ADMIN)
        if self.roles is not None:
            return self.roles.principal(name)
        return Principal(name, LEGACY_ADMIN if caller_role(peer) == ADMIN else LEGACY_READER)

    async def _start_http(self) -> int | None:
        address = self.cfg.http_address
        if not address:
            return None
        host, _, port = address.rpartition(":")
        self.web = WebServer(host.strip("[]"), int(port), self.ops, self._metrics_snapshot,
                             HttpAuth(self.cfg.http_tokens or None), self._http_caller, self.cfg.request_timeout)
        return await self.web.start()

    def _reload_on_hup(self) -> None:
        """SIGHUP reads the alert rules again (a bad file keeps the old ones, said in the log)."""
        import signal

        def hup() -> None:
            async def reload() -> None:
                try:
                    await self.alerts.reload()
                except Exception as exc:
                    log.error("alert rules not reloaded, the old ones stay: %s", exc)
            task = asyncio.get_running_loop().create_task(reload(), name="alerts-reload")
            self._reloads.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._reloads.discard)

        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hup)
        except (NotImplementedError, RuntimeError):
            pass

    async def serve(self, stop: asyncio.Event) -> None:
        runtime.quiet_gc()
        http_port = await self._start_http()
        tasks = [
            asyncio.create_task(self.downlink.receive(), name="children"),
            asyncio.create_task(self.ingest.run(), name="commits"),
            asyncio.create_task(self.ingest.run_upkeep(self.cfg.maintain_interval), name="upkeep"),
            asyncio.create_task(self.server.serve(), name="queries"),
            asyncio.create_task(self._timers(), name="timers"),
            asyncio.create_task(self.masks.deliver_pending(), name="pending-masks"),
        ]
        if self.alerts is not None:
            tasks.append(asyncio.create_task(self.alerts.run(), name="alerts"))
            self._reload_on_hup()
        runtime.notify_ready("root", {
            "name": self.name, "listen": self.cfg.listen, "port": self.downlink.port,
            "query": self.cfg.query, "query_port": self.query_conn.port(),
            "database": self.cfg.database, "pid": os.getpid(), "metrics_port": http_port,
            "http_port": http_port,
        })
        await stop.wait()
        runtime.notify_stopping()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.web is not None:
            await self.web.close()
        await self.ingest.commit_once()  # what arrived is stored (and acked) before we go
        self.ingest.close()
        self.downlink.close()
        self.query_conn.close()
        if self.curve is not None:
            self.curve.stop()
        log.info("root stopped")



def _plain(v, depth: int = 0):
    """Arguments as an audit row keeps them: plain values, bounded."""
    if depth > 4:
        return "..."
    if isinstance(v, dict):
        return {str(k)[:100]: _plain(x, depth + 1) for k, x in list(v.items())[:50]}
    if isinstance(v, (list, tuple)):
        return [_plain(x, depth + 1) for x in list(v)[:50]]
    if isinstance(v, str):
        return v[:500]
    return v if isinstance(v, (int, float, bool)) or v is None else repr(v)[:200]
