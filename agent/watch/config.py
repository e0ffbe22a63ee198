"""The agent's ``[[service]]``, ``[processes]`` and ``[[rule]]`` tables.

Built by ``clumon.proto.config`` like the rest of the agent's TOML, so an unknown
key, a wrong type or a value out of range is the usual one-line error naming file
and key (exit 2); each table's ``check`` adds what ranges cannot say: a regex that
does not compile, a start command that is not there, a user that does not exist.
"""

from __future__ import annotations

import os
import pwd
import signal
from dataclasses import dataclass, field
from typing import Any

from clumon.proto.config import MapOf, Pattern, Range, between, checked, name_field, one_of, regex_problem

DAY = 86400.0
STATES = ("starting", "running", "backoff", "stopped", "exited", "fatal")
FINDERS = ("port", "cmdline", "exe", "pidfile", "unix_socket")
_SIGNALS = ("TERM", "INT", "QUIT", "HUP", "KILL", "USR1", "USR2")


def _user(name: str, key: str) -> str | None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return f"key '{key}': no user named {name!r} on this node"
    return None


def _command(argv: tuple[str, ...], key: str, cwd: str = "") -> str | None:
    if not argv or not argv[0]:
        return f"key '{key}': expected a non-empty argv list"
    exe = argv[0]
    if os.sep in exe:
        path = exe if os.path.isabs(exe) or not cwd else os.path.join(cwd, exe)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"key '{key}': {exe!r} is not an executable file"
    else:
        import shutil  # only for a start command given by name: the agent's import stays light
        if shutil.which(exe) is not None:
            return None
        return f"key '{key}': no command {exe!r} on the agent's PATH"
    return None


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """One service the agent watches (and, with ``start``, keeps running)."""

    name: str = name_field("", empty=False)
    #: how to find it: exactly one of these
    port: int = between(0, 0, 65535)
    cmdline: str = ""
    exe: str = ""
    pidfile: str = ""
    unix_socket: str = ""
    #: only processes of this user count
    user: str = ""
    min: int = between(1, 0, 100_000)
    #: more copies than this are reported (0: no upper bound)
    max: int = between(0, 0, 100_000)
    #: how to start it (argv); empty: only watched and reported
    start: tuple[str, ...] = ()
    cwd: str = ""
    env: dict[str, str] = checked(check=MapOf(Pattern(r"[^\x00]*", 65536, "text")), default_factory=dict)
    stop_signal: str = one_of("TERM", _SIGNALS, fold=True)
    stop_timeout: float = between(10.0, 0.0, 3600.0)
    #: each start's output goes to a new NAME.HOST.PORT.YYYY-mm-dd.HH-MM-SS here
    log_dir: str = ""
    keep_logs: int = between(10, 1, 100_000)
    check_interval: float = between(5.0, 0.05, DAY)
    #: a start that is still running after this long counts as good
    start_secs: float = between(2.0, 0.0, 3600.0, low_open=False)
    #: more restarts than this within restart_window: fatal (no more tries)
    max_restarts: int = between(5, 0, 100_000)
    restart_window: float = between(600.0, 1.0, 30 * DAY)
    #: a start that shows no service after this long is killed and counts as failed
    start_timeout: float = between(30.0, 0.1, 3600.0)
    depends_on: tuple[str, ...] = ()

    @property
    def finder(self) -> str:
        return next(f for f in FINDERS if getattr(self, f))

    @property
    def signal(self) -> int:
        return getattr(signal, "SIG" + self.stop_signal.upper())

    def check(self) -> str | None:
        given = [f for f in FINDERS if getattr(self, f)]
        if len(given) != 1:
            return (f"({self.name}) expected exactly one of {', '.join(FINDERS)} to find it, got "
                    f"{', '.join(given) or 'none'}")
        if self.cmdline and (bad := regex_problem(self.cmdline, "cmdline")):
            return f"({self.name}) {bad}"
        if self.user and (bad := _user(self.user, "user")):
            return f"({self.name}) {bad}"
        if self.max and self.max < self.min:
            return f"({self.name}) key 'max': {self.max} is below 'min' ({self.min})"
        if self.start and (bad := _command(self.start, "start", self.cwd)):
            return f"({self.name}) {bad}"
        if self.cwd and not os.path.isdir(self.cwd):
            return f"({self.name}) key 'cwd': no directory {self.cwd!r}"
        if self.name in self.depends_on:
            return f"({self.name}) key 'depends_on': a service cannot depend on itself"
        return None


@dataclass(frozen=True, slots=True)
class ForbiddenRule:
    """Processes that must not run: by name (comm), cmdline regex or user."""

    name: str = ""
    cmdline: str = ""
    user: str = ""
    action: str = one_of("report", ("report", "kill"))

    def check(self) -> str | None:
        if not (self.name or self.cmdline or self.user):
            return "expected one of 'name', 'cmdline', 'user'"
        if self.cmdline:
            return regex_problem(self.cmdline, "cmdline")
        return None


@dataclass(frozen=True, slots=True)
class LimitRule:
    """Processes (by cmdline regex or user) over a CPU share or RSS for longer than ``for``."""

    cmdline: str = ""
    user: str = ""
    cpu_ratio: float = between(0.0, 0.0, 1e6, low_open=False)
    rss_bytes: int = between(0, 0, 2**62)
    for_: float = checked(60.0, Range(0.0, DAY), key="for")
    action: str = one_of("report", ("report", "renice", "kill"))

    def check(self) -> str | None:
        if not (self.cmdline or self.user):
            return "expected 'cmdline' or 'user' to say which processes"
        if not (self.cpu_ratio or self.rss_bytes):
            return "expected 'cpu_ratio' or 'rss_bytes'"
        if self.cmdline:
            return regex_problem(self.cmdline, "cmdline")
        return None


@dataclass(frozen=True, slots=True)
class ProcessesConfig:
    """Promon's other three kinds: forbidden, suspicious, over their limits."""

    forbidden: tuple[ForbiddenRule, ...] = ()
    #: deleted executables, executables under suspicious_dirs, uids with no passwd
    #: entry, listening ports not in allowed_ports (when that list is given)
    suspicious: bool = True
    suspicious_dirs: tuple[str, ...] = ("/tmp", "/dev/shm", "/var/tmp")
    allowed_ports: tuple[int, ...] = ()
    limits: tuple[LimitRule, ...] = ()
    #: seconds between judgements (the services' own check_interval otherwise)
    check_interval: float = between(5.0, 0.05, DAY)


@dataclass(frozen=True, slots=True)
class WhenThen:
    """A node-manager rule: when a service (glob) enters a state (glob), do one thing."""

    when: dict[str, str] = field(default_factory=dict)
    then: dict[str, Any] = field(default_factory=dict)

    ACTIONS = ("command", "stop", "start", "restart", "notify")

    def check(self) -> str | None:
        if set(self.when) - {"service", "state"} or "service" not in self.when:
            return "key 'when': expected {service = GLOB, state = GLOB}"
        if not all(isinstance(v, str) for v in self.when.values()):
            return "key 'when': expected text values"
        acts = [k for k in self.then if k in self.ACTIONS]
        if len(acts) != 1 or set(self.then) - set(self.ACTIONS):
            return f"key 'then': expected exactly one of {', '.join(self.ACTIONS)}"
        act = acts[0]
        v = self.then[act]
        if act == "command":
            if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
                return "key 'then.command': expected an argv list"
            return _command(tuple(v), "then.command")
        if not isinstance(v, str):
            return f"key 'then.{act}': expected a service name" + (" or a message" if act == "notify" else "")
        return None

    @property
    def action(self) -> tuple[str, Any]:
        act = next(k for k in self.then if k in self.ACTIONS)
        return act, self.then[act]


def check_all(services: tuple[ServiceConfig, ...], rules: tuple[WhenThen, ...]) -> str | None:
    """What only the whole set can say: names unique, dependencies and rule
    targets that exist, no dependency cycle."""
    names = [s.name for s in services]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        return f"key 'service': the name {dup!r} is used twice"
    known = set(names)
    for s in services:
        missing = [d for d in s.depends_on if d not in known]
        if missing:
            return f"service {s.name!r}: key 'depends_on': no service named {missing[0]!r}"
    graph = {s.name: s.depends_on for s in services}

    def cycle(n: str, path: tuple[str, ...]) -> tuple[str, ...] | None:
        if n in path:
            return path + (n,)
        for d in graph.get(n, ()):
            got = cycle(d, path + (n,))
            if got:
                return got
        return None

    for s in services:
        found = cycle(s.name, ())
        if found:
            return f"service {s.name!r}: key 'depends_on': a cycle ({' -> '.join(found)})"
    for i, r in enumerate(rules):
        act, v = r.action
        if act in ("stop", "start", "restart") and v not in known:
            return f"key 'rule[{i}].then.{act}': no service named {v!r}"
    return None
