"""Executable plugins: programs in a directory that print Prometheus text or Nagios
output, each run at its own interval with a timeout.

Each plugin has one task that runs it, waits for it, parses what it printed and
sleeps until its next run: so a plugin never runs twice at once, and a slow one
delays only itself. The program runs as a subprocess in its own session (its
children die with it), so nothing blocks the event loop. A plugin that outlives
``timeout``, exits with an error, cannot be started or prints garbage is killed
if still running and reported as an EVENT ``plugin_failed`` with the tail of its
stderr — once when it starts failing (or fails differently), then every
``report_every`` seconds while it keeps failing — and ``plugin_recovered`` when it
works again. Its series keep their last values; the other sources go on.

A file is a plugin when it is a regular executable file whose name does not start
with ``.`` or end with ``~``; a world-writable file is refused (anyone could make
the agent run anything). The directory is scanned again every ``rescan`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from clumon.agent.collectors.base import Sample
from clumon.agent.plugin_formats import GarbageOutput, looks_like_nagios, parse_nagios, parse_prometheus
from clumon.proto.frames import Event

log = logging.getLogger("clumon.agent.execplugins")

MAX_STDOUT = 1 << 20
STDERR_TAIL = 2048


@dataclass(slots=True)
class Outcome:
    """One run: the samples, or why it failed."""

    samples: list[Sample] | None
    reason: str = ""  # timeout, crash, garbage
    detail: str = ""
    exit_code: int | None = None
    stderr_tail: str = ""


@dataclass(slots=True)
class Plugin:
    path: Path
    interval: float
    failing: str = ""
    reported_at: float = 0.0
    runs: int = 0
    failures: int = 0

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def source(self) -> str:
        return "exec:" + self.path.name


def scan(directory: Path) -> list[Path]:
    """The plugins in ``directory`` (blocking; cheap)."""
    found = []
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        log.warning("cannot list plugin directory %s: %s", directory, exc)
        return []
    for e in entries:
        if e.name.startswith(".") or e.name.endswith("~"):
            continue
        try:
            st = e.stat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or not os.access(e.path, os.X_OK):
            continue
        if st.st_mode & stat.S_IWOTH:
            log.warning("refusing world-writable plugin %s", e.path)
            continue
        found.append(Path(e.path))
    return found


async def run_once(path: Path, timeout: float) -> Outcome:
    """Run one plugin to completion (or kill it at ``timeout``) and parse its output."""
    try:
        proc = await asyncio.create_subprocess_exec(
            str(path), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, cwd=str(path.parent))
    except OSError as exc:
        return Outcome(None, "crash", f"cannot start: {exc.strerror or exc}")
    out, err = bytearray(), bytearray()
    # both pipes are read to their end (beyond the limits, into nothing): a pipe left
    # unread would stall the plugin, and asyncio's wait() waits for the pipes too
    readers = asyncio.gather(_read(proc.stdout, out, MAX_STDOUT + 1, False, lambda: _kill(proc)),
                             _read(proc.stderr, err, STDERR_TAIL, True))
    timed_out = False
    try:
        try:
            await asyncio.wait_for(asyncio.shield(readers), timeout)
        except asyncio.TimeoutError:
            timed_out = True
            _kill(proc)
            try:  # the pipes close when the plugin's process group is gone
                await asyncio.wait_for(asyncio.shield(readers), 2.0)
            except asyncio.TimeoutError:  # something escaped the group and holds a pipe
                _abandon(readers)
                _close(proc)
        await proc.wait()
    finally:
        if proc.returncode is None:  # cancelled (the agent stops): take it down with us
            _kill(proc)
            _abandon(readers)
            _close(proc)
    code, tail = proc.returncode, _tail(err)
    if timed_out:
        return Outcome(None, "timeout", f"killed after {timeout:g} s", None, tail)
    if len(out) > MAX_STDOUT:
        return Outcome(None, "garbage", f"more than {MAX_STDOUT} bytes of output", code, tail)
    if code < 0:
        return Outcome(None, "crash", f"killed by signal {-code}", code, tail)
    text = out.decode("utf-8", "replace")
    try:
        if looks_like_nagios(text):
            return Outcome(parse_nagios(text, code, path.name), exit_code=code, stderr_tail=tail)
        if code != 0:
            return Outcome(None, "crash", f"exited with code {code}", code, tail)
        return Outcome(parse_prometheus(text), exit_code=code, stderr_tail=tail)
    except GarbageOutput as exc:
        return Outcome(None, "garbage", str(exc), code, tail)


async def _read(stream: asyncio.StreamReader, buf: bytearray, limit: int, tail: bool,
                on_full: Callable[[], None] | None = None) -> None:
    """Read a pipe to its end, keeping the first (or last) ``limit`` bytes."""
    full = False
    while chunk := await stream.read(65536):
        if full:
            continue
        buf += chunk
        if len(buf) > limit:
            if tail:
                del buf[:-limit]
            else:
                del buf[limit:]
                full = True
                if on_full is not None:
                    on_full()  # too much to be a plugin's output: stop it now


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _abandon(readers: asyncio.Future) -> None:
    """Cancel the pipe readers without an 'exception never retrieved' complaint."""
    readers.cancel()
    readers.add_done_callback(lambda f: f.cancelled() or f.exception())


def _close(proc: asyncio.subprocess.Process) -> None:
    """Let go of the pipes (asyncio offers no public way; needed only when a
    process that escaped the plugin's group holds them open)."""
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        transport.close()


def _tail(err: bytearray) -> str:
    return bytes(err[-STDERR_TAIL:]).decode("utf-8", "replace").strip()


class ExecPlugins:
    """Runs every plugin of a directory on its own schedule."""

    def __init__(self, directory: Path, interval: float, timeout: float, intervals: dict[str, float],
                 on_samples: Callable[[str, float, list[Sample]], None], on_event: Callable[[Event], None],
                 node: str = "", report_every: float = 600.0, rescan: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.directory = directory
        self.interval = interval
        self.timeout = timeout
        self.intervals = intervals
        self._on_samples = on_samples
        self._on_event = on_event
        self.node = node
        self.report_every = report_every
        self.rescan = rescan
        self._clock = clock
        self.plugins: dict[Path, Plugin] = {}
        self._tasks: dict[Path, asyncio.Task] = {}

    async def run(self) -> None:
        """Scan the directory, keep one task per plugin, scan again now and then."""
        while True:
            paths = await asyncio.to_thread(scan, self.directory)
            for path in paths:
                if path not in self._tasks:
                    plugin = self.plugins[path] = Plugin(path, float(self.intervals.get(path.name, self.interval)))
                    self._tasks[path] = asyncio.create_task(self._loop(plugin), name=f"plugin-{path.name}")
                    log.info("plugin %s every %gs", path, plugin.interval)
            for path in set(self._tasks) - set(paths):
                self._tasks.pop(path).cancel()
                self.plugins.pop(path, None)
                log.info("plugin %s removed", path)
            await asyncio.sleep(self.rescan)

    async def _loop(self, plugin: Plugin) -> None:
        while True:
            started = self._clock()
            outcome = await run_once(plugin.path, self.timeout)
            try:
                self._handle(plugin, outcome)
            except Exception:  # publishing failed: logged; the plugin keeps its schedule
                log.exception("handling the output of plugin %s failed", plugin.name)
            await asyncio.sleep(max(0.0, plugin.interval - (self._clock() - started)))

    def _handle(self, plugin: Plugin, outcome: Outcome) -> None:
        plugin.runs += 1
        if outcome.samples is not None:
            if plugin.failing:
                self._on_event(Event("plugin_recovered", self.node, f"plugin {plugin.name} works again",
                                     {"plugin": plugin.name, "was": plugin.failing}))
            plugin.failing = ""
            self._on_samples(plugin.source, plugin.interval, outcome.samples)
            return
        plugin.failures += 1
        now = self._clock()
        if outcome.reason != plugin.failing or now - plugin.reported_at >= self.report_every:
            plugin.reported_at = now
            message = f"plugin {plugin.name}: {outcome.reason}: {outcome.detail}"
            log.warning("%s%s", message, f"; stderr: {outcome.stderr_tail[-300:]}" if outcome.stderr_tail else "")
            self._on_event(Event("plugin_failed", self.node, message, {
                "plugin": plugin.name, "reason": outcome.reason, "detail": outcome.detail,
                "exit_code": outcome.exit_code, "stderr_tail": outcome.stderr_tail}))
        plugin.failing = outcome.reason

    async def stop(self) -> None:
        """Cancel every plugin task; a plugin still running is killed."""
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
