"""``/metrics`` on the root: parsed by prometheus_client, scraped by a real Prometheus."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request

import pytest
from harness import free_port, wait_for
from prometheus_client.parser import text_string_to_metric_families

from clumon.cli.client import Client


def scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_metrics_parse_with_node_and_aggregator_labels(tree):
    port = free_port()
    root = tree.root(metrics=f"127.0.0.1:{port}")
    agg = tree.aggregator("agg-1", [root.port])
    tree.agent("node-1", [agg.port])
    tree.agent("node-2", [agg.port])

    def both_there():
        fams = scrape(port)
        ups = {s.labels["node"]: s for s in fams.get("clumon_node_up", [])}
        # CPU ratios need two reads of the counters: they come with the second frame
        ratios = {s.labels["node"] for s in fams.get("node_cpu_ratio", [])}
        return {"node-1", "node-2"} <= set(ups) and "node_load1" in fams and "node-1" in ratios and fams

    fams = wait_for(both_there, what="two nodes on /metrics")
    ups = {s.labels["node"]: s for s in fams["clumon_node_up"]}
    assert ups["node-1"].value == 1 and ups["node-1"].labels["aggregator"] == "agg-1"
    load = {s.labels["node"]: s for s in fams["node_load1"]}
    assert set(load) >= {"node-1", "node-2"}
    # labels of the series itself are kept next to node and aggregator
    cpu = [s for s in fams.get("node_cpu_ratio", []) if s.labels["node"] == "node-1"]
    assert cpu and all("mode" in s.labels for s in cpu)
    # counters keep their _total name (the parser files them under the family without it)
    assert any(n.startswith("node_network_receive_bytes") for n in fams)
    assert "clumon_root_frames_in" in fams
    # whether compaction keeps up: the age of the oldest frame not yet compacted
    assert "clumon_root_frames_compacted" in fams and "clumon_root_raw_oldest_age_seconds" in fams
    with Client(root.query) as c:
        h = c.call("health")
    assert h["compaction_running"] is True and h["compaction_error"] == ""
    assert 0 <= h["raw_oldest_age_s"] < 600

    with Client(root.query) as c:
        c.call("forget", node="node-2", force=True)  # still up: forced
    fams = scrape(port)
    assert "node-2" not in {s.labels["node"] for s in fams["clumon_node_up"]}, "forgotten nodes drop out"

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10):
        pass
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=10)
    assert err.value.code == 404


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="the prometheus binary is not installed")
def test_a_real_prometheus_scrapes_the_root(tree, tmp_path):
    port = free_port()
    root = tree.root(metrics=f"127.0.0.1:{port}")
    agg = tree.aggregator("agg-1", [root.port])
    tree.agent("node-1", [agg.port])
    wait_for(lambda: "node-1" in {s.labels["node"] for s in scrape(port).get("clumon_node_up", [])},
             what="node-1 on /metrics")
    web = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: clumon
    static_configs:
      - targets: ["127.0.0.1:{port}"]
""")
    proc = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{web}"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))
    try:
        def query(q: str):
            with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/v1/query?query={q}", timeout=5) as r:
                return json.loads(r.read())["data"]["result"]

        up = wait_for(lambda: query("up"), timeout=60, what="Prometheus scraped the root")
        assert up[0]["value"][1] == "1", f"scrape failed: {up}"
        got = wait_for(lambda: query('clumon_node_up{node="node-1"}'), timeout=60, what="node-1 in Prometheus")
        assert got[0]["metric"]["aggregator"] == "agg-1" and got[0]["value"][1] == "1"
        assert wait_for(lambda: query('node_load1{node="node-1"}'), timeout=30, what="node_load1 in Prometheus")
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
