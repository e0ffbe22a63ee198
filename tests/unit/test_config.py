"""TOML config loading: strict types, endpoints, nesting, and one-line errors that
name the file, the key and what was expected."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from clumon.proto.config import ConfigError, Endpoint, from_dict, load


@dataclass(frozen=True)
class Link:
    heartbeat_interval: float = 5.0
    failover_after: float = 15.0
    retries: int = 3


@dataclass(frozen=True)
class Limits:
    hard: int = 10

    def check(self) -> str | None:
        return None if self.hard > 0 else f"limits.hard must be > 0, got {self.hard}"


@dataclass(frozen=True)
class Daemon:
    name: str = "node"
    bind: Endpoint = Endpoint("tcp://*:7400")
    parents: tuple[Endpoint, ...] = (Endpoint("tcp://localhost:7400"),)
    state_dir: Path = Path("/var/lib/clumon")
    database: str | None = None
    batch_max_frames: int | None = 100
    verbose: bool = False
    tags: list[str] = field(default_factory=list)
    intervals: dict[str, float] = field(default_factory=dict)
    extra: Any = None
    link: Link = Link()
    limits: Limits = Limits()


@dataclass(frozen=True)
class Required:
    name: str
    port: int = 1


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "daemon.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, cls: type = Daemon) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(cls, path)
    msg = str(info.value)
    assert "\n" not in msg, "errors are one line"
    assert msg.startswith(str(path) + ":"), msg
    return msg


# --- defaults and good values ----------------------------------------------------


def test_no_file_gives_defaults():
    assert load(Daemon, None) == Daemon()


def test_empty_file_gives_defaults(tmp_path):
    assert load(Daemon, write(tmp_path, "")) == Daemon()


def test_full_file(tmp_path):
    cfg = load(Daemon, write(tmp_path, """
name = "rack-1"
bind = "tcp://127.0.0.1:7500"
parents = ["tcp://root-a:7400", "tcp://[::1]:7400", "ipc:///run/clumon.sock"]
state_dir = "/tmp/state"
database = "sqlite:///x.db"
batch_max_frames = 7
verbose = true
tags = ["a", "b"]
intervals = { cpu = 1, disk = 30.5 }
extra = [1, "two"]

[link]
heartbeat_interval = 1      # an int where a float is expected is fine
failover_after = 2.5

[limits]
hard = 3
"""))
    assert cfg == Daemon(
        name="rack-1",
        bind="tcp://127.0.0.1:7500",
        parents=("tcp://root-a:7400", "tcp://[::1]:7400", "ipc:///run/clumon.sock"),
        state_dir=Path("/tmp/state"),
        database="sqlite:///x.db",
        batch_max_frames=7,
        verbose=True,
        tags=("a", "b"),
        intervals={"cpu": 1, "disk": 30.5},
        extra=[1, "two"],
        link=Link(1.0, 2.5, 3),
        limits=Limits(3),
    )
    assert type(cfg.link.heartbeat_interval) is float
    assert isinstance(cfg.state_dir, Path)


def test_partial_nested_table_keeps_other_defaults(tmp_path):
    cfg = load(Daemon, write(tmp_path, "[link]\nretries = 9\n"))
    assert cfg.link == Link(retries=9)
    assert cfg.limits == Limits()


def test_config_is_frozen():
    cfg = load(Daemon, None)
    with pytest.raises(AttributeError):
        cfg.name = "x"  # type: ignore[misc]


def test_overrides_apply_on_top_of_the_file_and_none_is_ignored(tmp_path):
    path = write(tmp_path, 'name = "from-file"\nverbose = true\n')
    cfg = load(Daemon, path, {"name": "from-flag", "verbose": None})
    assert (cfg.name, cfg.verbose) == ("from-flag", True)


def test_overrides_are_checked_like_the_file(tmp_path):
    with pytest.raises(ConfigError, match="key 'batch_max_frames': expected int or NoneType"):
        load(Daemon, write(tmp_path, ""), {"batch_max_frames": "many"})


def test_from_dict_names_its_source():
    with pytest.raises(ConfigError, match=r"^<flags>: unknown key 'nope'"):
        from_dict(Daemon, {"nope": 1}, where="<flags>")


# --- errors -------------------------------------------------------------------------


def test_unknown_key_names_it_and_lists_known_ones(tmp_path):
    msg = error_of(tmp_path, 'nmae = "typo"\n')
    assert "unknown key 'nmae'" in msg
    assert "known: " in msg and "name" in msg and "parents" in msg


def test_unknown_key_in_nested_table_has_its_path(tmp_path):
    msg = error_of(tmp_path, "[link]\nheartbeat = 1.0\n")
    assert "unknown key 'link.heartbeat'" in msg
    assert "heartbeat_interval" in msg


def test_unknown_table(tmp_path):
    assert "unknown key 'lnik'" in error_of(tmp_path, "[lnik]\nretries = 1\n")


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ('name = 5', "name", "expected str, got 5"),
        ('verbose = "yes"', "verbose", "expected bool, got 'yes'"),
        ('verbose = 1', "verbose", "expected bool, got 1"),
        ('batch_max_frames = 2.5', "batch_max_frames", "expected int or NoneType, got 2.5"),
        ('batch_max_frames = true', "batch_max_frames", "expected int or NoneType, got True"),
        ('state_dir = 3', "state_dir", "expected Path, got 3"),
        ('tags = "a"', "tags", "expected list of str, got 'a'"),
        ('tags = ["a", 2]', "tags[1]", "expected str, got 2"),
        ('intervals = [1]', "intervals", "expected dict, got [1]"),
        ('link = 5', "link", "expected table, got 5"),
        ('[link]\nheartbeat_interval = "5s"', "link.heartbeat_interval", "expected float, got '5s'"),
        ('[link]\nheartbeat_interval = true', "link.heartbeat_interval", "expected float, got True"),
        ('[link]\nretries = 2.0', "link.retries", "expected int, got 2.0"),
    ],
)
def test_wrong_type_names_key_and_expectation(tmp_path, text, key, expected):
    msg = error_of(tmp_path, text + "\n")
    assert f"key '{key}': {expected}" in msg


@pytest.mark.parametrize(
    "endpoint",
    [
        "localhost:7400",          # no transport
        "tcp://localhost",         # no port
        "tcp://localhost:0",       # port 0
        "tcp://localhost:65536",   # port out of range
        "tcp://localhost:74a0",
        "tcp://:7400",             # no host
        "udp://localhost:7400",
        "tcp://local host:7400",
        "",
    ],
)
def test_bad_endpoint(tmp_path, endpoint):
    msg = error_of(tmp_path, f'bind = "{endpoint}"\n')
    assert f"key 'bind': expected endpoint (tcp://host:port), got '{endpoint}'" in msg


def test_bad_endpoint_in_a_list_names_its_position(tmp_path):
    msg = error_of(tmp_path, 'parents = ["tcp://a:7400", "tcp://b"]\n')
    assert "key 'parents[1]': expected endpoint (tcp://host:port), got 'tcp://b'" in msg


def test_endpoint_must_be_a_string(tmp_path):
    assert "key 'bind': expected endpoint" in error_of(tmp_path, "bind = 7400\n")


@pytest.mark.parametrize("endpoint", ["tcp://*:7400", "tcp://10.0.0.1:1", "tcp://node-1.cluster:65535",
                                      "tcp://[fe80::1]:7400", "ipc:///tmp/x", "inproc://x"])
def test_good_endpoints(tmp_path, endpoint):
    assert load(Daemon, write(tmp_path, f'bind = "{endpoint}"\n')).bind == endpoint


def test_check_hook_failure_is_a_config_error(tmp_path):
    msg = error_of(tmp_path, "[limits]\nhard = 0\n")
    assert "limits.hard must be > 0, got 0" in msg


def test_missing_required_key_names_it(tmp_path):
    msg = error_of(tmp_path, "port = 2\n", Required)
    assert "missing key 'name'" in msg and "expected str" in msg


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=rf"^{missing}: cannot read: "):
        load(Daemon, missing)


def test_invalid_toml(tmp_path):
    msg = error_of(tmp_path, "name = \n")
    assert "not valid TOML" in msg


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# --- the daemons' own configs: every key has a range ------------------------------

import dataclasses  # noqa: E402
import math  # noqa: E402

from clumon.agent.config import AgentConfig, MaskConfig  # noqa: E402
from clumon.aggregator.config import AggregatorConfig  # noqa: E402
from clumon.proto.config import CHECK, NAME_MAX, ChildLink, Range  # noqa: E402
from clumon.root.config import RootConfig  # noqa: E402

#: (config class, prefix of its keys in the file)
TABLES = [(AgentConfig, ""), (MaskConfig, "masks."), (AggregatorConfig, ""), (RootConfig, "")]
DAEMON_OF = {MaskConfig: AgentConfig}


def _numeric_keys():
    for cls, prefix in TABLES:
        for f in dataclasses.fields(cls):
            if f.type in ("int", "float") or f.type in (int, float):
                yield cls, prefix, f


def _nest(prefix: str, key: str, value: Any) -> dict:
    return {prefix.rstrip("."): {key: value}} if prefix else {key: value}


def _range_error(cls, prefix, key, value) -> str:
    with pytest.raises(ConfigError) as info:
        from_dict(DAEMON_OF.get(cls, cls), _nest(prefix, key, value), "d.toml")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("d.toml: ")
    assert f"key '{prefix}{key}'" in msg, msg
    return msg


NUMERIC = list(_numeric_keys())
NUMERIC_IDS = [f"{cls.__name__}.{f.name}" for cls, _, f in NUMERIC]


@pytest.mark.parametrize("cls,prefix,f", NUMERIC, ids=NUMERIC_IDS)
def test_every_numeric_key_declares_a_finite_range(cls, prefix, f):
    spec = f.metadata.get(CHECK)
    assert isinstance(spec, Range), f"{cls.__name__}.{f.name} has no declared range"
    assert math.isfinite(spec.low) and math.isfinite(spec.high) and spec.low < spec.high
    assert spec.holds(f.default), "the default lies in its own range"


@pytest.mark.parametrize("cls,prefix,f", NUMERIC, ids=NUMERIC_IDS)
@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "below", "above", "huge", "text", "bool"])
def test_every_numeric_key_rejects_bad_values(cls, prefix, f, bad):
    spec = f.metadata[CHECK]
    is_int = f.type in ("int", int)
    value = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf,
             "below": spec.low - (1 if is_int else max(spec.low, 1e-3)),
             "above": spec.high + (1 if is_int else spec.high),
             "huge": 10**30 if is_int else 1e308, "text": "5", "bool": True}[bad]
    if spec.low_open and bad == "below":
        value = spec.low  # the open end itself is out
    msg = _range_error(cls, prefix, f.name, value)
    assert "expected" in msg


@pytest.mark.parametrize("cls,prefix,f", NUMERIC, ids=NUMERIC_IDS)
def test_every_numeric_key_accepts_its_bounds(cls, prefix, f):
    spec = f.metadata[CHECK]
    ends = [spec.high] if spec.low_open else [spec.low, spec.high]
    for value in ends:
        cfg = from_dict(DAEMON_OF.get(cls, cls), _nest(prefix, f.name, value))
        held = getattr(cfg.masks, f.name) if prefix else getattr(cfg, f.name)
        assert held == value


@pytest.mark.parametrize("key,value", [
    ("commit_max_frames", 0), ("max_frame_bytes", 0), ("max_frame_bytes", -1), ("heartbeat_interval", math.nan),
    ("down_after", math.nan), ("down_after", math.inf), ("max_pending_frames", -5),
])
def test_root_reported_cases(key, value):
    _range_error(RootConfig, "", key, value)


@pytest.mark.parametrize("cls", [AgentConfig, AggregatorConfig])
@pytest.mark.parametrize("key,value", [("spool_max_bytes", 0), ("spool_max_bytes", -1), ("jitter", 1e308),
                                       ("failover_after", math.nan), ("heartbeat_interval", math.nan)])
def test_children_reported_cases(cls, key, value):
    _range_error(cls, "", key, value)


@pytest.mark.parametrize("cls", [AgentConfig, AggregatorConfig, RootConfig])
@pytest.mark.parametrize("name", ["n" * (NAME_MAX + 1), "a/b", "two words", "node*", "-lead", "tab\tname", "é"])
def test_bad_names(cls, name):
    msg = _range_error(cls, "", "name", name)
    assert f"at most {NAME_MAX} characters" in msg
    assert len(msg) < 400, "a long bad value is shortened in the one line"


@pytest.mark.parametrize("cls", [AgentConfig, AggregatorConfig, RootConfig])
@pytest.mark.parametrize("name", ["node-1", "r01n07.cluster", "agg_3", "n" * NAME_MAX])
def test_good_names(cls, name):
    assert from_dict(cls, {"name": name}).name == name


def test_empty_name_means_host_name_for_children_only():
    assert from_dict(AgentConfig, {"name": ""}).name == ""
    _range_error(RootConfig, "", "name", "")


@pytest.mark.parametrize("cls", [AgentConfig, AggregatorConfig, RootConfig])
def test_log_level(cls):
    assert from_dict(cls, {"log_level": "debug"}).log_level == "debug"
    assert "one of DEBUG" in _range_error(cls, "", "log_level", "LOUD")


@pytest.mark.parametrize("cls,table", [(AgentConfig, None), (AgentConfig, "masks"), (AggregatorConfig, None),
                                       (RootConfig, None)])
def test_unknown_key_in_each_table(cls, table):
    data = {table: {"bogus": 1}} if table else {"bogus": 1}
    with pytest.raises(ConfigError, match="unknown key '" + (f"{table}." if table else "") + "bogus'"):
        from_dict(cls, data)


def test_unknown_source_in_intervals():
    with pytest.raises(ConfigError, match=r"key 'intervals\.cpux': unknown source"):
        from_dict(AgentConfig, {"intervals": {"cpux": 5}})
    assert from_dict(AgentConfig, {"intervals": {"cpu": 5, "filesystem": 30}}).intervals == {"cpu": 5, "filesystem": 30}


def test_plugin_names_are_known_sources_in_intervals(tmp_path):
    plugin = tmp_path / "gpu_temp"
    plugin.write_text("#!/bin/sh\necho x 1\n")
    plugin.chmod(0o755)
    cfg = from_dict(AgentConfig, {"plugin_dir": str(tmp_path), "intervals": {"gpu_temp": 10}})
    assert cfg.intervals == {"gpu_temp": 10}
    with pytest.raises(ConfigError, match="intervals.gpu_tmp"):
        from_dict(AgentConfig, {"plugin_dir": str(tmp_path), "intervals": {"gpu_tmp": 10}})


@pytest.mark.parametrize("value", [math.nan, math.inf, 0, -1, 1e12, "10", True])
def test_bad_interval_values(value):
    with pytest.raises(ConfigError, match=r"key 'intervals\.cpu': expected"):
        from_dict(AgentConfig, {"intervals": {"cpu": value}})


def test_unknown_collector():
    with pytest.raises(ConfigError, match=r"key 'collectors\[1\]': expected one of cpu.*got 'cpux'"):
        from_dict(AgentConfig, {"collectors": ["cpu", "cpux"]})


@pytest.mark.parametrize("retention,match", [({"1x": 3600}, r"retention\.1x.*unknown key"),
                                             ({"raw": math.nan}, r"retention\.raw': expected"),
                                             ({"1d": 0}, r"retention\.1d': expected"),
                                             ({"1d": 1e300}, r"retention\.1d': expected")])
def test_bad_retention(retention, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(RootConfig, {"retention": retention})


@pytest.mark.parametrize("url", ["mysql://u@h/db", "oracle://h/db", "nourl", "://", "sqlite"])
def test_unknown_database(url):
    with pytest.raises(ConfigError, match="key 'database': expected an SQLAlchemy URL of sqlite or postgresql"):
        from_dict(RootConfig, {"database": url})


@pytest.mark.parametrize("url", ["sqlite:///x.db", "sqlite:////abs/x.db", "postgresql+psycopg://u@h/db",
                                 "postgresql://h/db"])
def test_known_databases(url):
    assert from_dict(RootConfig, {"database": url}).database == url


def test_link_timings_are_declared_once():
    """The children's configs inherit ChildLink's fields, ranges included."""
    for cls in (AgentConfig, AggregatorConfig):
        assert issubclass(cls, ChildLink)
        mine = {f.name: f.metadata.get(CHECK) for f in dataclasses.fields(cls)}
        for f in dataclasses.fields(ChildLink):
            assert mine[f.name] == f.metadata.get(CHECK)
    root = {f.name: f.metadata.get(CHECK) for f in dataclasses.fields(RootConfig)}
    agg = {f.name: f.metadata.get(CHECK) for f in dataclasses.fields(AggregatorConfig)}
    assert root["heartbeat_interval"] == agg["heartbeat_interval"]
    assert root["down_after"] == agg["down_after"]
