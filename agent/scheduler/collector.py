"""The scheduler source of the agent: polls the scheduler's commands at its own
interval and hands the figures to the agent as a pushed source.

Each poll runs the adapter's commands at once, as subprocesses in their own
session (killed with their children at ``timeout``), so nothing blocks the
event loop; parsing and counting run in a worker thread. A command that is
missing, fails, hangs or prints what its adapter cannot read makes the poll
fail: the last good figures are sent again with ``sched_stale{cluster}`` = 1,
``clumon_sched_errors_total{cluster}`` counts the failed polls, and an EVENT
``sched_error`` says why — once when a failure starts (or changes), then every
``report_every`` seconds while it goes on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Callable, Protocol

from clumon.agent.collectors.base import Sample, series
from clumon.agent.scheduler import figures
from clumon.agent.scheduler.config import SchedulerConfig
from clumon.agent.scheduler.jobs import JobTracker
from clumon.agent.scheduler.lsf import LsfAdapter
from clumon.agent.scheduler.pbs import PbsAdapter
from clumon.agent.scheduler.slurm import SlurmAdapter
from clumon.agent.scheduler.snapshot import ParseError, Snapshot
from clumon.proto.frames import Event

log = logging.getLogger("clumon.agent.scheduler")

#: the name of the pushed source in the agent's sampler
SOURCE = "scheduler"
STDERR_TAIL = 300


class Adapter(Protocol):
    """One scheduler's commands and how to read what they print."""

    kind: str

    @property
    def commands(self) -> dict[str, list[str]]: ...

    def parse(self, outputs: dict[str, bytes]) -> Snapshot:
        """The outputs of ``commands`` (by the same keys) as a snapshot; raises ParseError."""

    def fallback(self, stderr: str) -> bool:
        """Whether a failed command's complaint asks for other commands (now switched to)."""


ADAPTERS: dict[str, Callable[[], Adapter]] = {"slurm": SlurmAdapter, "pbs": PbsAdapter, "lsf": LsfAdapter}


class CommandFailed(Exception):
    """A command that did not give output to parse; ``reason`` is one of
    missing, timeout, failed."""

    def __init__(self, reason: str, command: str, detail: str, stderr: str = ""):
        super().__init__(f"{command}: {detail}")
        self.reason, self.command, self.detail, self.stderr = reason, command, detail, stderr


async def run_command(argv: list[str], timeout: float) -> bytes:
    """The standard output of a command that exits 0 within ``timeout``; else CommandFailed."""
    name = os.path.basename(argv[0])
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise CommandFailed("missing", name, f"cannot start: {exc.strerror or exc}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        _kill(proc)
        try:  # the pipes close when the command's process group is gone
            await asyncio.wait_for(proc.wait(), 2.0)
        except asyncio.TimeoutError:
            pass
        raise CommandFailed("timeout", name, f"no answer after {timeout:g} s") from None
    finally:
        if proc.returncode is None:  # cancelled (the agent stops) or timed out
            _kill(proc)
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip()[-STDERR_TAIL:]
        raise CommandFailed("failed", name, f"exited with code {proc.returncode}" + (f": {tail}" if tail else ""), tail)
    return out


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class SchedulerSource:
    """Polls one scheduler and pushes its figures (and its own health) to the agent."""

    def __init__(self, cfg: SchedulerConfig, on_samples: Callable[[str, float, list[Sample]], None],
                 on_event: Callable[[Event], None], node: str = "", adapter: Adapter | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        self.cfg = cfg
        self.adapter = adapter if adapter is not None else ADAPTERS[cfg.kind]()
        self._on_samples = on_samples
        self._on_event = on_event
        self.node = node
        self._clock = clock
        self._wall = wall
        #: the jobs as the root was last told of them
        self.jobs = JobTracker(cfg.cluster, node, cfg.jobs_sync_every)
        #: the figures of the last good poll (kept, marked stale, while polls fail)
        self.figures: list[Sample] = []
        self.snapshot: Snapshot | None = None
        self.polls = self.errors = 0
        self.failing = ""  # reason and command of the failure going on
        self._reported_at = 0.0
        labels = {"cluster": cfg.cluster}
        self._stale_name = series("sched_stale", **labels)
        self._errors_name = series("clumon_sched_errors_total", **labels)

    async def run(self) -> None:
        """Poll every ``interval`` seconds until cancelled."""
        while True:
            started = self._clock()
            try:
                await self.poll()
            except Exception:  # a bug here must not end the agent's other work
                log.exception("scheduler poll failed")
            await asyncio.sleep(max(0.0, self.cfg.interval - (self._clock() - started)))

    async def poll(self) -> None:
        """One poll: run the commands, count, push the figures (or the stale ones)."""
        self.polls += 1
        try:
            outputs = await self._outputs()
            self.snapshot, self.figures, job_events = await asyncio.to_thread(self._count, outputs, self._wall())
        except CommandFailed as exc:
            self._failed(exc.reason, exc.command, exc.detail)
        except ParseError as exc:
            self._failed("garbage", str(exc).partition(":")[0], str(exc))
        except Exception as exc:  # output no parser foresaw: the same failure, logged in full
            log.exception("scheduler %s: reading the output failed", self.cfg.cluster)
            self._failed("garbage", self.adapter.kind, f"{type(exc).__name__}: {exc}")
        else:
            if self.failing:
                log.info("scheduler %s answers again", self.cfg.cluster)
            self.failing = ""
            for event in job_events:
                self._on_event(event)
        self._push()

    async def _outputs(self) -> dict[str, bytes]:
        try:
            return await self._run_all()
        except CommandFailed as exc:
            if exc.reason == "failed" and self.adapter.fallback(exc.stderr):
                log.info("scheduler %s: %s; using the %s adapter's other commands", self.cfg.cluster, exc, self.adapter.kind)
                return await self._run_all()
            raise

    async def _run_all(self) -> dict[str, bytes]:
        commands = self.adapter.commands
        outs = await asyncio.gather(*(run_command(self._argv(argv), self.cfg.timeout) for argv in commands.values()),
                                    return_exceptions=True)
        for out in outs:
            if isinstance(out, BaseException):
                raise out
        return dict(zip(commands, outs))

    def _argv(self, argv: list[str]) -> list[str]:
        return [os.path.join(self.cfg.bin_dir, argv[0]), *argv[1:]] if self.cfg.bin_dir else argv

    def _count(self, outputs: dict[str, bytes], now: float) -> tuple[Snapshot, list[Sample], list[Event]]:
        snapshot = self.adapter.parse(outputs)
        return snapshot, figures.samples(snapshot, self.cfg.cluster), self.jobs.events(snapshot, now)

    def _failed(self, reason: str, command: str, detail: str) -> None:
        self.errors += 1
        key, now = f"{reason}:{command}", self._clock()
        if key != self.failing or now - self._reported_at >= self.cfg.report_every:
            self._reported_at = now
            message = f"scheduler {self.cfg.cluster} ({self.adapter.kind}): {reason}: {detail}"
            log.warning("%s", message)
            self._on_event(Event("sched_error", self.node, message, {
                "cluster": self.cfg.cluster, "kind": self.adapter.kind, "reason": reason,
                "command": command, "detail": detail, "stale": bool(self.figures)}))
        self.failing = key

    def _push(self) -> None:
        health = [Sample(self._stale_name, 1.0 if self.failing else 0.0),
                  Sample(self._errors_name, float(self.errors))]
        self._on_samples(SOURCE, self.cfg.interval, [*self.figures, *health])
