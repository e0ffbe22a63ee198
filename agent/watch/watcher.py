"""The watch as the agent runs it: a check every ``check_interval`` in a thread of
its own (every /proc read, start and stop happens there, never on the loop), the
services' and flags' series pushed like a source's, events sent up as EVENTs, the
node-manager rules and dependencies applied on each state change, and the agent's
``services``, ``service`` and ``procs`` ops answered.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import queue
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from clumon.agent.collectors.base import Sample, series
from clumon.proto.frames import Event

from .config import ProcessesConfig, ServiceConfig, WhenThen
from .procs import ProcTable
from .promon import KINDS, Promon
from .services import FATAL, RUNNING, Service, Supervisor

log = logging.getLogger("clumon.agent.watch")
SOURCE = "services"
#: without [processes], the whole process table is read at least every this many
#: checks (extra copies over `max`, drift), else only when a service moved
FULL_SCAN_EVERY = 6
COMMAND_TIMEOUT = 30.0
#: at the agent's stop, how long the last save waits for a check (or a stop) under way
CLOSE_TIMEOUT = 5.0


class Watcher:
    def __init__(self, services: tuple[ServiceConfig, ...], processes: ProcessesConfig | None,
                 rules: tuple[WhenThen, ...], node: str, state_dir: Path, procfs: str,
                 on_samples: Callable[[str, float, list[Sample]], None], on_event: Callable[[Event], None]):
        self.node = node
        self.procs = ProcTable(procfs)
        #: events from the watch thread, sent from the loop
        self._events: queue.SimpleQueue[tuple[str, str, dict]] = queue.SimpleQueue()
        self.supervisor = Supervisor(services, self.procs, state_dir, self._emit)
        self.promon = Promon(processes, self.procs, self._emit, self._own_pids) if processes is not None else None
        self.rules = rules
        self.interval = min([s.check_interval for s in services] +
                            ([processes.check_interval] if processes is not None else []) or [5.0])
        self._on_samples = on_samples
        self._on_event = on_event
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="watch")
        self.supervisor.listeners.append(self._state_changed)
        self.checks = 0
        self.check_ms = 0.0
        #: CPU seconds of the watch thread (its own clock: bench/agent_overhead.py)
        self.cpu_s = 0.0

    def _own_pids(self) -> set[int]:
        """The agent itself and the services it runs are not judged as strangers."""
        return {os.getpid(), *(p for s in self.supervisor.services.values() for p in (*s.found, *s.started))}

    def _emit(self, type_: str, message: str, attrs: dict) -> None:
        self._events.put((type_, message, attrs))  # in the watch thread; sent from the loop

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = time.monotonic()
            try:
                await loop.run_in_executor(self._thread, self._check)
            except Exception:
                log.exception("service and process check failed")
            try:
                self._flush()
            except Exception:
                log.exception("sending the watch's events and series failed")
            await asyncio.sleep(max(0.05, self.interval - (time.monotonic() - started)))

    def _check(self) -> None:
        t0 = time.perf_counter()
        c0 = time.thread_time()
        now = time.time()
        if self.promon is not None:  # judges every process: the table is read each time
            self.procs.scan()
            self.supervisor.check(now)
            self.promon.judge(now)
        else:  # services alone: the table only when something moved, and now and then
            full = self.checks % FULL_SCAN_EVERY == 0
            self.supervisor.check(now, self.procs.scan, full)
        self.checks += 1
        self.check_ms = (time.perf_counter() - t0) * 1000
        self.cpu_s += time.thread_time() - c0

    def _flush(self) -> None:
        for _ in range(self._events.qsize()):  # those there now: the thread may add more
            type_, message, attrs = self._events.get_nowait()
            self._on_event(Event(type_, self.node, message, attrs))
        self._on_samples(SOURCE, self.interval, self.samples())

    def samples(self) -> list[Sample]:
        out = []
        for name, s in self.supervisor.services.items():
            out.append(Sample(series("clumon_service_up", service=name), 1.0 if s.state == RUNNING else 0.0))
            out.append(Sample(series("clumon_service_restarts_total", service=name), float(s.restarts_total)))
        if self.promon is not None:
            counts = self.promon.counts()
            out += [Sample(series("clumon_process_flags", kind=k), float(counts[k])) for k in KINDS]
        return out

    async def close(self) -> None:
        """Keep the services' state one last time. The watch thread owns that state: the
        save runs there, after the check or stop under way (waited for up to
        CLOSE_TIMEOUT; past that, it still runs there once that is done)."""
        saved = asyncio.get_running_loop().run_in_executor(self._thread, self.supervisor.save)
        try:
            await asyncio.wait_for(asyncio.shield(saved), CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning("the watch is still busy after %g s: its state is kept when it is done", CLOSE_TIMEOUT)
        self._thread.shutdown(wait=False)

    # --- rules and dependencies (in the watch thread) --------------------------------------

    def _state_changed(self, s: Service, old: str, new: str) -> None:
        sup = self.supervisor
        if new == FATAL:
            for other in sup.services.values():
                if s.cfg.name in other.cfg.depends_on and other.wanted:
                    other.held_by = s.cfg.name
                    sup.stop(other, f"{s.cfg.name}, which it depends on, is fatal")
                    other.held_by = s.cfg.name
        elif new == RUNNING:
            for other in sup.services.values():
                if other.held_by == s.cfg.name:
                    other.wanted, other.held_by, other.next_check = True, "", 0.0
                    self._emit("service_action", f"{other.cfg.name}: {s.cfg.name} runs again: starting it", {
                        "service": other.cfg.name, "action": "start", "ok": True,
                        "reason": f"{s.cfg.name} is running again"})
        for i, r in enumerate(self.rules):
            if not fnmatch.fnmatchcase(s.cfg.name, r.when["service"]) or \
                    not fnmatch.fnmatchcase(new, r.when.get("state", "*")):
                continue
            act, arg = r.action
            outcome = self._do(act, arg, f"rule {i + 1}: {s.cfg.name} is {new}")
            self._emit("rule_fired", f"rule {i + 1}: {s.cfg.name} is {new}: {act} {arg}: {outcome}", {
                "rule": i + 1, "service": s.cfg.name, "state": new, "old": old, "action": act,
                "target": arg, "outcome": outcome})

    def _do(self, act: str, arg: Any, why: str) -> str:
        sup = self.supervisor
        if act == "notify":
            return "notified"
        if act == "command":
            try:
                done = subprocess.run(list(arg), stdin=subprocess.DEVNULL, capture_output=True,
                                      timeout=COMMAND_TIMEOUT, start_new_session=True)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"failed: {exc}"
            return f"exit {done.returncode}"
        target = sup.services.get(arg)
        if target is None:
            return f"no service {arg!r}"
        if act == "stop":
            return sup.stop(target, why)["state"]
        if act == "start":
            return sup.start_by_hand(target, why)["state"]
        return sup.restart(target, why)["state"]

    # --- ops (REQUESTs from above) ---------------------------------------------------------

    async def answer_services(self, args: dict) -> list[dict]:
        return [s.as_dict() for s in self.supervisor.services.values()]

    async def answer_service(self, args: dict) -> dict:
        action, name = args.get("action"), args.get("name")
        if action not in ("start", "stop", "restart"):
            raise ValueError("argument 'action': expected start, stop or restart")
        s = self.supervisor.services.get(name) if isinstance(name, str) else None
        if s is None:  # said in the answer: each node's outcome is its own
            known = ", ".join(self.supervisor.services) or "none"
            return {"service": name, "action": action, "error": f"no service {name!r} here (services: {known})"}
        why = f"{action} asked by an operator"
        sup = self.supervisor
        fn = {"start": sup.start_by_hand, "stop": sup.stop, "restart": sup.restart}[action]
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, s, why)
        finally:
            self._flush()

    async def answer_procs(self, args: dict) -> dict:
        top = args.get("top", 10)
        if not isinstance(top, int) or not 0 < top <= 1000:
            raise ValueError("argument 'top': expected 1..1000")
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._procs_now, top)

    def _procs_now(self, top: int) -> dict:
        """The top processes by CPU (over a short look) and memory, and the flagged ones."""
        self.procs.scan()
        first = {pid: self.procs.cpu_ticks(pid) for pid in list(self.procs.procs)}
        t0 = time.monotonic()
        time.sleep(0.25)
        dt = time.monotonic() - t0
        tck, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
        rows = []
        for pid, before in first.items():
            now = self.procs.cpu_ticks(pid)
            p = self.procs.procs.get(pid)
            if before is None or now is None or p is None:
                continue
            rows.append({"pid": pid, "name": p.name, "user": _user(p.uid), "cpu_ratio": (now[0] - before[0]) / tck / dt,
                         "rss_bytes": now[1] * page, "cmdline": p.cmdline[:200]})
        return {"top_cpu": sorted(rows, key=lambda r: -r["cpu_ratio"])[:top],
                "top_memory": sorted(rows, key=lambda r: -r["rss_bytes"])[:top],
                "flagged": self.promon.flagged() if self.promon is not None else [],
                "services": [s.as_dict() for s in self.supervisor.services.values()],
                "processes": len(self.procs.procs)}


def _user(uid: int) -> str:
    from .promon import _user as name
    return name(uid)
