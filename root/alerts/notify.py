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
import smtplib
import ssl
import time
import urllib.error
import urllib.request
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
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        if not 200 <= resp.status < 300:
            raise OSError(f"HTTP {resp.status}")


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
        proc.kill()
        await proc.wait()
        raise OSError(f"still running after {COMMAND_TIMEOUT:g} s: killed") from None
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip()[-200:]
        raise OSError(f"exited with code {proc.returncode}" + (f": {tail}" if tail else ""))


class Channel:
    """One receiver's one way of delivery, with its queue and its retries."""

    def __init__(self, receiver: Receiver, kind: str, deliver: Callable[[Notice], "asyncio.Future | object"],
                 on_result: Result, give_up_after: float, clock: Callable[[], float] = time.monotonic):
        self.receiver, self.kind = receiver, kind
        self._deliver = deliver
        self._on_result = on_result
        self.give_up_after = give_up_after
        self._clock = clock
        self.queue: asyncio.Queue[tuple[Notice, float]] = asyncio.Queue()
        self.sent = self.failed = self.dropped = 0
        self.backoff_max = 300.0

    def put(self, n: Notice) -> None:
        if self.queue.qsize() >= QUEUE_MAX:
            self.queue.get_nowait()
            self.dropped += 1
            self._on_result(self.receiver.name, self.kind, False, f"queue full ({QUEUE_MAX}): the oldest dropped", 0)
        self.queue.put_nowait((n, self._clock()))

    async def run(self) -> None:
        while True:
            n, queued = await self.queue.get()
            delay, attempts = 1.0, 0
            while True:
                attempts += 1
                try:
                    await self._deliver(n)
                except Exception as exc:  # every failure is the receiver's, never the root's
                    self.failed += 1
                    detail = f"{type(exc).__name__}: {exc}"
                    if self._clock() - queued + delay > self.give_up_after:
                        self._on_result(self.receiver.name, self.kind, False, f"gave up: {detail}", attempts)
                        break
                    self._on_result(self.receiver.name, self.kind, False, detail, attempts)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.backoff_max)
                else:
                    self.sent += 1
                    self._on_result(self.receiver.name, self.kind, True, "", attempts)
                    break


class Notifier:
    """Every receiver's channels; ``send`` never waits."""

    def __init__(self, receivers: dict[str, Receiver], smtp: Smtp, on_result: Result, external_url: str = "",
                 give_up_after: float = 3600.0, webhook_timeout: float = 10.0):
        self.smtp = smtp
        self.external_url = external_url
        self.webhook_timeout = webhook_timeout
        self.channels: dict[str, list[Channel]] = {}
        for r in receivers.values():
            chans = []
            if r.email:
                chans.append(Channel(r, "email", self._email(r), on_result, give_up_after))
            if r.webhook:
                chans.append(Channel(r, "webhook", self._webhook(r), on_result, give_up_after))
            if r.command:
                chans.append(Channel(r, "command", self._command(r), on_result, give_up_after))
            self.channels[r.name] = chans
        self._tasks: list[asyncio.Task] = []

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
            c.put(n)
        return True

    def queued(self) -> int:
        return sum(c.queue.qsize() for chans in self.channels.values() for c in chans)

    async def stop(self, drain: float = 2.0) -> None:
        """Give queued notifications ``drain`` seconds, then stop the channels."""
        deadline = time.monotonic() + drain
        while self.queued() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
