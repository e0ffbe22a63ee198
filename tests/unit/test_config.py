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
