"""The root's configuration: one frozen dataclass, loaded from TOML in ``main()``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clumon.proto.codec import MAX_FRAME_BYTES
from clumon.proto.curve import CurveConfig
from clumon.proto.config import (DAY, HOUR, Endpoint, MapOf, Range, between, checked, down_after,
                                 heartbeat_interval, log_level, max_frame_bytes, name_field)

TIERS = ("raw", "1m", "30m", "2h", "1d")
#: the database dialects the root's storage is built and tested for
DIALECTS = ("sqlite", "postgresql")
YEAR = 365 * DAY
#: where the HTTP server listens unless told
DEFAULT_HTTP = "127.0.0.1:7402"


@dataclass(frozen=True, slots=True)
class RootConfig:
    """Settings of ``clumon-root``."""

    name: str = name_field("root", empty=False)
    #: where aggregators (and agents without one) connect
    listen: Endpoint = Endpoint("tcp://*:7400")
    #: where clients (``clumon``) send queries
    query: Endpoint = Endpoint("tcp://*:7401")
    #: host:port of the HTTP server: the dashboard's pages, its API (``/api/v1/``) and
    #: ``/metrics``; empty to disable. Off loopback it needs ``http_tokens``.
    http: str | None = None
    #: the old name of ``http``, still accepted (``http`` wins when both are given)
    metrics: str | None = None
    #: a file of ``NAME TOKEN`` lines: when given, every HTTP request needs
    #: ``Authorization: Bearer TOKEN``; required when the HTTP port is off loopback
    http_tokens: str = ""
    #: nodes not heard from for this long drop out of /metrics
    metrics_stale_after: float = between(300.0, 1.0, 30 * DAY)
    #: SQLAlchemy URL: sqlite:///path (default) or postgresql+psycopg://...
    database: str = "sqlite:////var/lib/clumon/root/clumon.db"
    state_dir: Path = Path("/var/lib/clumon/root")
    heartbeat_interval: float = heartbeat_interval()
    down_after: float = down_after()
    #: seconds between commits (frames are acked only after theirs)
    commit_interval: float = between(0.05, 0.001, 60.0)
    commit_max_frames: int = between(20000, 1, 10_000_000)
    #: frames held in memory while the database is away; beyond this, new frames
    #: are dropped unacknowledged (their senders keep and replay them)
    max_pending_frames: int = between(500_000, 1, 100_000_000)
    #: DATA frames held while their dictionary is unknown
    max_waiting_frames: int = between(100_000, 1, 100_000_000)
    #: ... and at most this many bytes of them
    max_waiting_bytes: int = between(64 * 1024 * 1024, 1024, 1024 * 1024 * 1024 * 1024)
    #: seconds between the root's own health samples (stored like a node's series)
    health_interval: float = between(10.0, 0.1, DAY)
    #: seconds between storage upkeep runs (rollup flush, compaction, retention)
    maintain_interval: float = between(10.0, 0.1, DAY)
    #: 1-minute rollup buckets reach SQL at least this often
    rollup_flush: float = between(60.0, 0.1, DAY)
    #: raw frames are compacted into per-series chunks this long after their window
    compact_after: float = between(300.0, 1.0, 100 * YEAR)
    #: how long each tier is kept, seconds: raw, 1m, 30m, 2h, 1d (defaults 3 d,
    #: 30 d, 180 d, 2 y, 10 y); give only the ones to change
    retention: dict[str, float] = checked(check=MapOf(Range(0.0, 100 * YEAR, low_open=True), TIERS),
                                          default_factory=dict)
    #: seconds log lines are kept (their own retention, apart from the series' tiers)
    log_retention: float = between(30 * DAY, HOUR, 100 * YEAR)
    #: seconds a request may take when the client gives no deadline
    request_timeout: float = between(5.0, 0.01, HOUR)
    max_frame_bytes: int = max_frame_bytes(MAX_FRAME_BYTES)
    log_level: str = log_level()
    #: the alert rules, receivers and routes (TOML, docs: deploy/alerts.toml); empty: no alerts
    alerts: str = ""
    #: ``[curve]``: CurveZMQ keys for the children's and the clients' sockets; none: open
    curve: CurveConfig = CurveConfig()
    #: which client key may do what (TOML, docs: deploy/roles.toml); empty: loopback is
    #: admin and every other client a reader, as before keys
    roles: str = ""

    @property
    def http_address(self) -> str:
        """Where the HTTP server listens ("": nowhere): ``http``, else the old ``metrics``."""
        if self.http is not None:
            return self.http
        return self.metrics if self.metrics is not None else DEFAULT_HTTP

    def check(self) -> str | None:
        """What the declared ranges cannot express: host:port and the database URL."""
        key = "http" if self.http is not None else "metrics"
        if self.http and self.metrics and self.http != self.metrics:
            return (f"keys 'http' and 'metrics' name one server ('metrics' is its old name): give only "
                    f"'http', got {self.http!r} and {self.metrics!r}")
        if self.http_address and not _host_port(self.http_address):
            return f"key '{key}': expected host:port (e.g. 127.0.0.1:7402), got {self.http_address!r}"
        bad = _http_problem(key, self.http_address, self.http_tokens)
        if bad:
            return bad
        bad = self.curve.problem(0, serves=True)
        if bad:
            return bad
        if self.roles:
            if not self.curve.on:
                return "key 'roles': roles name client keys: [curve] secret_key and authorized_keys are required"
            from clumon.root.roles import RolesError, load_roles
            try:
                load_roles(self.roles)
            except RolesError as exc:
                return str(exc)
        return _database_problem(self.database)


def _host_port(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 <= int(port) < 65536


def _http_problem(key: str, address: str, tokens: str) -> str | None:
    """An HTTP port off loopback without tokens, or a tokens file that cannot be used."""
    from clumon.root.httpauth import TokenFileError, is_loopback, load_tokens

    if address and not tokens and not is_loopback(address.rpartition(":")[0]):
        return (f"key '{key}': {address} is not loopback: HTTP bound elsewhere needs 'http_tokens' "
                "(a file of NAME TOKEN lines; 'clumon keys token NAME' makes one)")
    if tokens:
        try:
            load_tokens(tokens)
        except TokenFileError as exc:
            return str(exc)
    return None


def _database_problem(url: str) -> str | None:
    """Why ``url`` is no database the root can use (None when it is)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    expected = f"key 'database': expected an SQLAlchemy URL of {' or '.join(DIALECTS)} (sqlite:///file.db)"
    try:
        backend = make_url(url).get_backend_name()
    except (ArgumentError, ValueError):
        return f"{expected}, got {url!r}"
    if backend not in DIALECTS:
        return f"{expected}, got {url!r} (unknown dialect {backend!r})"
    return None
