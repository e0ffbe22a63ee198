"""Delivering notifications: email over SMTP, webhooks with Alertmanager's JSON
(version 4), and a command with the alert in its environment.

Each channel of each receiver has its own queue and task, so an SMTP server
that is down delays that receiver's email and nothing else: not ingest, not
webhooks. A failed delivery is retried with backoff (1 s doubling to 5 min)
until ``give_up_after``; each failure and each give-up is reported through
``on_result`` (the root makes them ``alert`` events and health counters).
Blocking work (smtplib, urllib) runs in threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections import deque
from email.message import EmailMessage
from typing import Callable

from clumon.proto import __version__

from .dispatch import Notice
from .rules import Receiver, Smtp

log = logging.getLogger("clumon.root.alerts")

#: queued notifications per channel beyond which the oldest are dropped (and said)
QUEUE_MAX = 1000
COMMAND_TIMEOUT = 30.0

Result = Callable[[str, str, bool, str, int], None]  # receiver, channel, ok, detail, attempts


def webhook_body(n: Notice, external_url: str) -> bytes:
    common = _common([a["labels"] for a in n.alerts])
    annotations = _common([a["annotations"] for a in n.alerts])
    return json.dumps({
        "version": "4", "groupKey": n.group_key, "truncatedAlerts": 0, "status": n.status,
        "receiver": n.receiver, "groupLabels": n.group_labels, "commonLabels": common,
        "commonAnnotations": annotations, "externalURL": external_url, "alerts": n.alerts,
    }).encode()


def _common(maps: list[dict]) -> dict:
    if not maps:
        return {}
    out = dict(maps[0])
    for m in maps[1:]:
        out = {k: v for k, v in out.items() if m.get(k) == v}
    return out


def email_message(n: Notice, smtp: Smtp, to: tuple[str, ...]) -> EmailMessage:
    firing = [a for a in n.alerts if a["status"] == "firing"]
    resolved = [a for a in n.alerts if a["status"] == "resolved"]
    names = ", ".join(sorted({a["labels"].get("alertname", "") for a in n.alerts}))
    msg = EmailMessage()
    msg["Subject"] = f"[{n.status.upper()}{':' + str(len(firing)) if firing else ''}] {names}"
    msg["From"] = smtp.from_
    msg["To"] = ", ".join(to)
    msg["X-Clumon-Group"] = n.group_key
    lines = []
    for title, group in (("Firing", firing), ("Resolved", resolved)):
        if group:
            lines.append(f"{title}:")
            for a in group:
                labels = " ".join(f"{k}={v}" for k, v in sorted(a["labels"].items()))
                lines.append(f"  - {a['annotations'].get('summary', '')}")
                lines.append(f"    {labels}  since {a['startsAt']}")
                if a["annotations"].get("folded"):
                    lines.append(f"    {a['annotations']['folded']}")
    lines.append(f"\n-- clumon {__version__}")
    msg.set_content("\n".join(lines))
    return msg


def send_email(smtp: Smtp, msg: EmailMessage) -> None:
    password = ""
    if smtp.user:
        with open(smtp.password_file, encoding="utf-8") as f:
            password = f.read().strip()
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as s:
        if smtp.starttls:
            s.starttls(context=ssl.create_default_context())
        if smtp.user:
            s.login(smtp.user, password)
        s.send_message(msg)


def post_webhook(url: str, body: bytes, timeout: float) -> None:
    req = urllib.request.Request(url, body, {"Content-Type": "application/json",
                                             "User-Agent": f"clumon/{__version__}"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if not 200 <= resp.status < 300:
                raise OSError(f"HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500 and exc.code not in (408, 429):
            raise Permanent(f"HTTP {exc.code} {exc.reason}") from None
        raise OSError(f"HTTP {exc.code} {exc.reason}") from None


async def run_command(argv: tuple[str, ...], n: Notice, body: bytes) -> None:
    env = dict(os.environ, CLUMON_ALERT_STATUS=n.status, CLUMON_ALERT_RECEIVER=n.receiver,
               CLUMON_ALERT_GROUP=n.group_key, CLUMON_ALERT_COUNT=str(len(n.alerts)),
               CLUMON_ALERT_NAMES=",".join(sorted({a["labels"].get("alertname", "") for a in n.alerts})),
               CLUMON_ALERT_NODES=",".join(sorted({a["labels"].get("node", "") for a in n.alerts})),
               CLUMON_ALERT_SUMMARY="; ".join(a["annotations"].get("summary", "") for a in n.alerts)[:4000])
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                                                env=env, start_new_session=True)
    try:
        _, err = await asyncio.wait_for(proc.communicate(body), COMMAND_TIMEOUT)
    except asyncio.TimeoutError:
        _kill_group(proc)
        await proc.wait()
        raise OSError(f"still running after {COMMAND_TIMEOUT:g} s: killed") from None
    except asyncio.CancelledError:  # the root stops or the rules were reloaded: no orphan left behind
        _kill_group(proc)
        await asyncio.shield(proc.wait())
        raise
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip()[-200:]
        raise OSError(f"exited with code {proc.returncode}" + (f": {tail}" if tail else ""))


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the command and what it started
    except ProcessLookupError:
        pass


class Permanent(Exception):
    """A failure that a retry cannot mend (an HTTP 4xx other than 408 and 429)."""


class Channel:
    """One receiver's one way of delivery, with its queue and its retries.

    Notices go out in order. One that fails is retried with backoff until
    ``give_up_after``, unless a newer notice of the same group waits behind it
    (that one says the group's state now: the old one is superseded) or the
    failure is permanent (said at once, not retried)."""

    def __init__(self, receiver: Receiver, kind: str, deliver: Callable[[Notice], "asyncio.Future | object"],
                 on_result: Result, give_up_after: float, clock: Callable[[], float] = time.monotonic,
                 on_done: Callable[[Notice], None] = lambda n: None):
        self.receiver, self.kind = receiver, kind
        self._deliver = deliver
        self._on_result = on_result
        self._on_done = on_done
        self.give_up_after = give_up_after
        self._clock = clock
        self.queue: deque[tuple[Notice, float]] = deque()
        self._wake = asyncio.Event()
        #: the notice being delivered (or waiting to be retried), with when it was queued
        self.current: tuple[Notice, float] | None = None
        self.sent = self.failed = self.dropped = self.superseded = 0
        self.backoff_max = 300.0

    def put(self, n: Notice, queued: float | None = None) -> None:
        if len(self.queue) >= QUEUE_MAX:
            old, _ = self.queue.popleft()
            self.dropped += 1
            self._on_done(old)
            self._on_result(self.receiver.name, self.kind, False, f"queue full ({QUEUE_MAX}): the oldest dropped", 0)
        self.queue.append((n, self._clock() if queued is None else queued))
        self._wake.set()

    def qsize(self) -> int:
        return len(self.queue) + (self.current is not None)

    def _newer_waits(self, n: Notice) -> bool:
        return any(q.group_key == n.group_key for q, _ in self.queue)

    async def run(self) -> None:
        while True:
            while not self.queue:
                self._wake.clear()
                await self._wake.wait()
            self.current = self.queue.popleft()
            n, queued = self.current
            delay, attempts = 1.0, 0
            while True:
                attempts += 1
                try:
                    await self._deliver(n)
                except Exception as exc:  # every failure is the receiver's, never the root's
                    self.failed += 1
                    detail = f"{type(exc).__name__}: {exc}"
                    if isinstance(exc, Permanent):
                        self._on_result(self.receiver.name, self.kind, False, f"gave up (permanent): {detail}",
                                        attempts)
                        break
                    if self._clock() - queued + delay > self.give_up_after:
                        self._on_result(self.receiver.name, self.kind, False, f"gave up: {detail}", attempts)
                        break
                    self._on_result(self.receiver.name, self.kind, False, detail, attempts)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.backoff_max)
                    if self._newer_waits(n):  # it says the group's state now: this one is stale
                        self.superseded += 1
                        self._on_result(self.receiver.name, self.kind, False,
                                        f"gave up: {detail}; a newer notice of the group waits", attempts)
                        break
                else:
                    self.sent += 1
                    n.delivered += 1
                    self._on_result(self.receiver.name, self.kind, True, "", attempts)
                    break
            self.current = None
            self._on_done(n)

    def take(self) -> list[tuple[Notice, float]]:
        """What is still to deliver (the one in hand first); the channel holds nothing after."""
        out = ([self.current] if self.current is not None else []) + list(self.queue)
        self.current = None
        self.queue.clear()
        return out


class Notifier:
    """Every receiver's channels; ``send`` never waits.

    ``inflight`` counts, per alert fingerprint, the notices about it still to be
    delivered: the engine keeps such an alert in memory until they are done, and a
    root that stops hands what is left back (``stop``) so that it is told again
    after the restart, not lost."""

    def __init__(self, receivers: dict[str, Receiver], smtp: Smtp, on_result: Result, external_url: str = "",
                 give_up_after: float = 3600.0, webhook_timeout: float = 10.0):
        self.smtp = smtp
        self.external_url = external_url
        self.webhook_timeout = webhook_timeout
        self.channels: dict[str, list[Channel]] = {}
        self.inflight: dict[str, int] = {}
        for r in receivers.values():
            chans = []
            if r.email:
                chans.append(self._channel(r, "email", self._email(r), on_result, give_up_after))
            if r.webhook:
                chans.append(self._channel(r, "webhook", self._webhook(r), on_result, give_up_after))
            if r.command:
                chans.append(self._channel(r, "command", self._command(r), on_result, give_up_after))
            self.channels[r.name] = chans
        self._tasks: list[asyncio.Task] = []

    def _channel(self, r: Receiver, kind: str, deliver, on_result: Result, give_up_after: float) -> Channel:
        return Channel(r, kind, deliver, on_result, give_up_after, on_done=self._done)

    def _done(self, n: Notice) -> None:
        for fp in n.told:
            left = self.inflight.get(fp, 0) - 1
            if left > 0:
                self.inflight[fp] = left
            else:
                self.inflight.pop(fp, None)

    def _email(self, r: Receiver):
        async def deliver(n: Notice) -> None:
            await asyncio.to_thread(send_email, self.smtp, email_message(n, self.smtp, r.email))
        return deliver

    def _webhook(self, r: Receiver):
        async def deliver(n: Notice) -> None:
            await asyncio.to_thread(post_webhook, r.webhook, webhook_body(n, self.external_url), self.webhook_timeout)
        return deliver

    def _command(self, r: Receiver):
        async def deliver(n: Notice) -> None:
            await run_command(r.command, n, webhook_body(n, self.external_url))
        return deliver

    def start(self) -> None:
        for chans in self.channels.values():
            for c in chans:
                self._tasks.append(asyncio.create_task(c.run(), name=f"notify-{c.receiver.name}-{c.kind}"))

    def send(self, n: Notice) -> bool:
        chans = self.channels.get(n.receiver)
        if not chans:
            return False
        for c in chans:
            self._put(c, n)
        return True

    def _put(self, c: Channel, n: Notice, queued: float | None = None) -> None:
        for fp in n.told:
            self.inflight[fp] = self.inflight.get(fp, 0) + 1
        c.put(n, queued)

    def queued(self) -> int:
        return sum(c.qsize() for chans in self.channels.values() for c in chans)

    async def stop(self, drain: float = 2.0) -> list[tuple[str, str, Notice, float]]:
        """Give queued notifications ``drain`` seconds, then stop the channels.
        Returns what was not delivered: (receiver, channel kind, notice, queued at)."""
        deadline = time.monotonic() + drain
        while self.queued() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        left = []
        for name, chans in self.channels.items():
            for c in chans:
                for n, queued in c.take():
                    self._done(n)
                    left.append((name, c.kind, n, queued))
        return left

    def adopt(self, left: list[tuple[str, str, Notice, float]]) -> list[tuple[str, str, Notice, float]]:
        """Take over another notifier's undelivered notices (after a reload) where the
        receiver and its channel still exist; returns the ones that have no home."""
        homeless = []
        for name, kind, n, queued in left:
            c = next((c for c in self.channels.get(name, ()) if c.kind == kind), None)
            if c is None:
                homeless.append((name, kind, n, queued))
            else:
                self._put(c, n, queued)
        return homeless
