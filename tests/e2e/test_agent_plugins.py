"""Plugins in a real agent behind a real tree: an entry-point collector found in a
dist-info on sys.path, executable plugins of both formats, and ones that hang,
crash and print garbage — reported as EVENTs at the root while the rest goes on.
Also: concurrent sync reads share one read of a source."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from harness import wait_for

from clumon.cli.client import Client

PLUGIN_MODULE = '''
import os, time
from clumon.agent.collectors import Sample

class Counter:
    """Counts its reads in a file; each read takes a while."""
    name = "testcount"
    default_interval = 3600.0

    def collect(self):
        with open(os.environ["CLUMON_TEST_COUNT_FILE"], "a") as fh:
            fh.write("x")
        time.sleep(0.3)
        return [Sample("test_plugin_value", 1.0), Sample('test_plugin_other{kind="a"}', 2.0)]

class Garbage:
    name = "garbage"
    default_interval = 1.0

    def collect(self):
        return ["not a sample"]
'''

ENTRY_POINTS = """[clumon.collectors]
counter = clumon_testplugin:Counter
garbage = clumon_testplugin:Garbage
missing = clumon_testplugin:NoSuchThing
"""


def make_dist(site: Path) -> None:
    site.mkdir()
    (site / "clumon_testplugin.py").write_text(PLUGIN_MODULE)
    info = site / "clumon_testplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: clumon-testplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)


def executable(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def test_plugins_report_failures_and_feed_series(tree, tmp_path):
    site, plugins, count = tmp_path / "site", tmp_path / "plugins", tmp_path / "count"
    make_dist(site)
    plugins.mkdir()
    executable(plugins, "jobs", "echo '# TYPE jobs_waiting gauge'\necho 'jobs_waiting{queue=\"batch\"} 42'\n")
    executable(plugins, "check_scratch", "echo 'SCRATCH OK - fine | used=42%;80;90'\n")
    executable(plugins, "hang", "echo 'going to sleep' >&2\nsleep 300\n")
    executable(plugins, "crash", "echo 'Traceback: it broke' >&2\nexit 2\n")
    executable(plugins, "garbage", "echo 'this is not a metric at all'\n")
    tree.env["PYTHONPATH"] = os.pathsep.join([str(site), tree.env.get("PYTHONPATH", "")])
    tree.env["CLUMON_TEST_COUNT_FILE"] = str(count)
    root = tree.root()
    agg = tree.aggregator("agg-1", [root.port])
    tree.agent("node-1", [agg.port], plugin_dir=str(plugins), plugin_interval=0.5, plugin_timeout=1.0)

    with Client(root.query) as c:
        def events() -> dict[str, dict]:
            got = {}
            for e in c.call("events", node="node-1"):
                key = e["attrs"].get("plugin") or e["attrs"].get("source")
                if e["type"] in ("plugin_failed", "source_failed"):
                    got[key] = e
            return got

        got = wait_for(lambda: {"hang", "crash", "garbage", "missing", "garbage"} <= set(events()) and events(),
                       timeout=30, what="plugin_failed EVENTs")
        assert got["hang"]["attrs"]["reason"] == "timeout" and "going to sleep" in got["hang"]["attrs"]["stderr_tail"]
        assert got["crash"]["attrs"]["reason"] == "crash" and got["crash"]["attrs"]["exit_code"] == 2
        assert "it broke" in got["crash"]["attrs"]["stderr_tail"]
        assert got["garbage"]["type"] in ("plugin_failed", "source_failed")
        assert "not loaded" in got["missing"]["message"]

        def latest() -> dict:
            return c.call("latest", node="node-1")["values"]

        values = wait_for(lambda: {'jobs_waiting{queue="batch"}', 'nagios_perfdata_ratio{plugin="check_scratch",label="used"}',
                                   "test_plugin_value", "node_load1"} <= set(latest()) and latest(),
                          what="plugin series next to the built-in ones")
        assert values['jobs_waiting{queue="batch"}'][0] == 42.0
        assert values['nagios_perfdata_ratio{plugin="check_scratch",label="used"}'][0] == 0.42
        assert values['nagios_status{plugin="check_scratch"}'][0] == 0.0

        # each failure is reported once, although the plugins keep failing every 0.5 s
        failed = [e for e in c.call("events", node="node-1") if e["type"] == "plugin_failed"]
        assert sum(e["attrs"]["plugin"] == "crash" for e in failed) == 1


def test_concurrent_sync_reads_share_one_read(tree, tmp_path):
    site, count = tmp_path / "site", tmp_path / "count"
    make_dist(site)
    tree.env["PYTHONPATH"] = os.pathsep.join([str(site), tree.env.get("PYTHONPATH", "")])
    tree.env["CLUMON_TEST_COUNT_FILE"] = str(count)
    root = tree.root()
    agg = tree.aggregator("agg-1", [root.port])
    tree.agent("node-1", [agg.port])
    with Client(root.query) as c:
        wait_for(lambda: "test_plugin_value" in c.call("latest", node="node-1")["values"], what="node-1 values")
    before = len(count.read_text())
    # different globs, so the root does not merge them: five REQUESTs reach the agent
    globs = ["test_plugin_value", "test_plugin_*", "test_plugin_v*", "test_*", "*plugin_other*"]
    results: dict[str, dict] = {}
    barrier = threading.Barrier(len(globs))

    def ask(glob: str) -> None:
        with Client(root.query) as c:
            barrier.wait()
            results[glob] = c.call("read", targets=["node-1"], series=[glob], max_age=0)

    threads = [threading.Thread(target=ask, args=(g,)) for g in globs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(count.read_text()) - before == 1, "five concurrent reads, one read of the source"
    for glob, result in results.items():
        part = result["nodes"]["node-1"]
        assert part["live"] and part["values"], glob
        assert all(live for _, _, _, live in part["values"].values())
    assert set(results["test_plugin_*"]["nodes"]["node-1"]["values"]) == {"test_plugin_value", 'test_plugin_other{kind="a"}'}

    # a snapshot young enough is served without a read (by the agent, or a cache on the way)
    with Client(root.query) as c:
        cached = c.call("read", targets=["node-1"], series=["test_plugin_value"], max_age=3600)
    part = cached["nodes"]["node-1"]
    assert part["live"] is False and part["values"]["test_plugin_value"][0] == 1.0
    assert len(count.read_text()) - before == 1
