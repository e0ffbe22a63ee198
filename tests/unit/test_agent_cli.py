"""The agent's command line: its four options, clear errors, and no argparse."""

from __future__ import annotations

import subprocess
import sys

import pytest

from clumon.agent.__main__ import UsageError, parse_args


def test_options_in_both_spellings_and_repeated_parents():
    args = parse_args(["--config", "a.toml", "--name=n1", "--parent", "tcp://x:1", "--parent=tcp://y:2",
                       "--state-dir", "/tmp/s"])
    assert args == {"config": "a.toml", "name": "n1", "parent": ["tcp://x:1", "tcp://y:2"], "state_dir": "/tmp/s"}


def test_nothing_given_leaves_every_option_unset():
    assert parse_args([]) == {"config": None, "name": None, "parent": None, "state_dir": None}


@pytest.mark.parametrize("argv,words", [
    (["--bogus"], "unrecognized argument: --bogus"),
    (["--config"], "argument --config: expected one argument"),
    (["--name", "--parent", "tcp://x:1"], "argument --name: expected one argument"),
    (["stray"], "unrecognized argument: stray"),
])
def test_bad_command_lines_raise_with_what_was_wrong(argv, words):
    with pytest.raises(UsageError, match=words):
        parse_args(argv)


def test_a_bad_command_line_exits_2_and_help_exits_0_without_argparse():
    bad = subprocess.run([sys.executable, "-m", "clumon.agent", "--nope"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "clumon-agent: error: unrecognized argument: --nope" in bad.stderr
    code = ("import sys; from clumon.agent.__main__ import main; rc = main(['--help']); "
            "print(rc, 'argparse' in sys.modules, 'shutil' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    # an editable install's .pth files may import shutil before any of ours runs
    before = subprocess.run([sys.executable, "-c", "import sys; print('shutil' in sys.modules)"],
                            capture_output=True, text=True, timeout=60).stdout.strip()
    assert out.stdout.splitlines()[-1] == f"0 False {before}" and "--parent ENDPOINT" in out.stdout
