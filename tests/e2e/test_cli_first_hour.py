"""The command line as a new operator meets it: options where they are typed,
clear one-line errors for names that do not exist, the real timeout."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from harness import free_port, wait_for

from clumon.proto import __version__


def clumon(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clumon.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(out: subprocess.CompletedProcess, *words: str) -> None:
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_version_help_and_no_root():
    out = clumon("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"clumon {__version__}"
    out = clumon()
    assert out.returncode == 0 and "usage: clumon" in out.stdout and "nodes" in out.stdout
    # nothing listens there: the error names the time really waited and what to check
    port = free_port()
    t0 = time.monotonic()
    out = clumon("nodes", "--endpoint", f"tcp://127.0.0.1:{port}", "--timeout", "0.7")
    waited = time.monotonic() - t0
    one_line_error(out, "within 0.7 s", "--endpoint", "CLUMON_ENDPOINT", "clumon-root")
    assert waited >= 0.7


def test_options_after_the_subcommand_and_clear_errors_for_unknown_names(tree):
    root = tree.root()
    agg = tree.aggregator("agg-1", [root.port])
    tree.agent("node-1", [agg.port])
    q = root.query

    def nodes() -> dict:
        out = clumon("nodes", "--json", "--endpoint", q)  # as users type it
        assert out.returncode == 0, out.stderr
        return {n["name"]: n for n in json.loads(out.stdout)}

    wait_for(lambda: nodes().get("node-1", {}).get("state") == "up", what="node-1 up")
    shown = json.loads(clumon("mask", "show", "node-1", "--json", "--endpoint", q).stdout)
    assert shown["node"] == "node-1"
    assert json.loads(clumon("--json", "--endpoint", q, "tree").stdout)["children"]
    wait_for(lambda: clumon("series", "node-1", "node_load1", "--endpoint", q).returncode == 0, what="series")

    one_line_error(clumon("series", "node-1", "node_lod1", "--endpoint", q), "unknown_series", "node_load1")
    one_line_error(clumon("read", "nod-1", "--endpoint", q), "unknown_node", "nod-1")
    one_line_error(clumon("read", "agg-1", "--endpoint", q), "not_an_agent", "agg-1/*")
    one_line_error(clumon("latest", "ghost", "--endpoint", q), "unknown_node")
    out = clumon("read", "agg-1/*", "--json", "--endpoint", q)
    assert out.returncode == 0 and "node-1" in json.loads(out.stdout)["nodes"]
