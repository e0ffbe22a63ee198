"""The clumon parser alone (no root): common options before or after the subcommand,
the environment's endpoint, --version, bare clumon, one handler per query command."""

from __future__ import annotations

import pytest

from clumon.cli.__main__ import main, parser
from clumon.proto import __version__


def parse(*argv: str):
    return parser()[0].parse_args(list(argv))


@pytest.mark.parametrize("argv", [("--json", "nodes"), ("nodes", "--json"), ("mask", "show", "n1", "--json"),
                                  ("--json", "mask", "show", "n1"), ("series", "n1", "cpu", "--json")])
def test_json_before_or_after_the_subcommand(argv):
    assert parse(*argv).json is True


def test_no_json_by_default():
    assert parse("nodes").json is False


def test_endpoint_and_timeout_after_the_subcommand():
    a = parse("latest", "n1", "--endpoint", "tcp://127.0.0.1:9", "--timeout", "3")
    assert (a.endpoint, a.timeout) == ("tcp://127.0.0.1:9", 3.0)


def test_a_value_before_the_subcommand_is_not_overwritten_by_its_default():
    a = parse("--endpoint", "tcp://127.0.0.1:9", "--timeout", "4", "--json", "nodes")
    assert (a.endpoint, a.timeout, a.json) == ("tcp://127.0.0.1:9", 4.0, True)


def test_endpoint_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("CLUMON_ENDPOINT", "tcp://127.0.0.1:5")
    assert parse("nodes").endpoint == "tcp://127.0.0.1:5"
    assert parse("nodes", "--endpoint", "tcp://127.0.0.1:6").endpoint == "tcp://127.0.0.1:6"


def test_every_query_command_has_a_handler():
    p, commands = parser()
    assert set(commands) == {"nodes", "tree", "latest", "top", "series", "summary", "events", "read",
                             "health", "forget", "mask", "cluster", "jobs", "job", "report", "alerts", "silence", "rules", "services", "service", "procs", "audit", "logs"}


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"clumon {__version__}"


def test_bare_clumon_prints_the_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: clumon") and "nodes" in out and "mask" in out


def test_one_version_everywhere():
    from clumon.agent import __version__ as agent_version
    from clumon.cli.simworker import VERSION
    assert agent_version == VERSION == __version__


def test_report_dates_and_months_are_checked_before_asking():
    from clumon.cli.sched import moment
    assert moment("2026-11-01") == 1793491200.0  # UTC midnight
    assert moment("7d") == 7 * 86400
    for bad in (["report", "utilization", "--month", "2026-13"], ["report", "utilization", "--since", "2026-02-30"],
                ["report", "utilization", "--month", "2026-11", "--since", "7d"], ["jobs", "--state", "done"]):
        with pytest.raises(SystemExit) as exc:
            parse(*bad)
        assert exc.value.code == 2
