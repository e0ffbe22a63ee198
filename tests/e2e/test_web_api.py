"""The root's HTTP API (``/api/v1/<op>``), pages and ``/metrics`` against real daemons
and a real SQLite store: every endpoint's shape, 400s with one line, 404s, bounds,
and, on a secured site, 401 without a token and 403 by role (the API and the pages)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from web_site import start_site

from harness import free_port, wait_for


NOW = time.time()
#: (id, user, state, cores, start, end, nodes) of cluster c1, stored before the root starts
JOBS = [("101", "ann", "running", 8, NOW - 7200, None, "node-1"),
        ("102", "uma", "finished", 4, NOW - 5400, NOW - 1800, "node-2"),
        ("103", "uma", "pending", 2, None, None, "")]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = start_site(tmp_path_factory.mktemp("open"), secured=False, aggregators=1, agents_per_agg=2, jobs=JOBS,
                   logs_on="node-1")
    yield s
    s.tree.stop_all()


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    s = start_site(tmp_path_factory.mktemp("secured"), secured=True, aggregators=2, agents_per_agg=1, jobs=JOBS,
                   logs_on="node-2")
    yield s
    s.tree.stop_all()


# --- shapes ----------------------------------------------------------------------------------


def test_every_read_endpoint_answers_in_the_query_sockets_shape(site):
    ops = site.get("/api/v1/").json()["result"]["ops"]
    for name in ("nodes", "tree", "latest", "series", "summary", "events", "alerts", "jobs", "utilization",
                 "overview", "grid", "cluster", "health"):
        assert name in ops

    nodes = site.ok("nodes")
    assert {n["name"] for n in nodes} >= {"node-1", "node-2", "agg-1"}
    assert {"name", "path", "parent", "role", "state", "since"} <= set(nodes[0])
    assert site.ok("nodes", states="up", role="agent", match="agg-1/*")

    tree = site.ok("tree")
    assert tree["role"] == "root" and tree["nodes_by_state"].get("up") == 2
    assert tree["children"][0]["name"] == "agg-1"

    latest = site.ok("latest", node="node-1")
    assert latest["state"] == "up" and "node_load1" in latest["values"]
    value, ts = latest["values"]["node_load1"]
    assert isinstance(value, (int, float)) and ts > 1e9
    only = site.ok("latest", node="node-1", series="node_load1,node_memory_used_ratio")
    assert set(only["values"]) == {"node_load1", "node_memory_used_ratio"}

    series = site.ok("series", node="node-1", series="node_load1", since="10m")
    assert series["tier"] == "raw" and series["points"] and len(series["points"][0]) == 2

    summary = site.ok("summary", series="node_load1", since="1h", by="aggregator")
    assert summary["by"] == "aggregator" and "groups" in summary

    events = site.ok("events", since="1h", limit=50)
    assert any(e["type"] == "state" and e["subject"] == "node-1" for e in events)
    assert {"ts", "subject", "type", "message", "attrs", "source"} <= set(events[0])
    assert all(e["subject"] == "node-2" for e in site.ok("events", node="node-2"))

    o = site.ok("overview")
    assert o["states"]["up"] == 2 and o["nodes"] == 2
    assert o["aggregators"][0]["aggregator"] == "agg-1" and o["hottest_memory"]

    grid = site.ok("grid", aggregator="agg-1")
    assert [r["node"] for r in grid["nodes"]] == ["node-1", "node-2"]
    assert {"state", "cpu", "memory", "load1"} <= set(grid["nodes"][0])

    assert site.ok("cluster") == []  # no scheduler source sends figures here
    jobs = site.ok("jobs")
    assert [j["id"] for j in jobs] == ["103", "102", "101"]
    assert {"cluster", "id", "user", "account", "state", "cores", "nodes", "start_time", "end_time"} <= set(jobs[0])
    assert [j["id"] for j in site.ok("jobs", user="uma", state="finished")] == ["102"]
    util = site.ok("utilization", by="month", since="183d")
    assert util["by"] == "month" and [c["cluster"] for c in util["clusters"]] == ["c1"]
    days = site.ok("utilization", by="day", since="7d")["clusters"][0]["periods"]
    assert len(days) >= 3 and all(0.49 < d["utilization"] <= 1.0 and d["power_on"] == 1.0 for d in days)
    hours = {u["user"]: u["core_hours"] for u in util["users"]}
    running = 8 * (time.time() - JOBS[0][4]) / 3600  # 101 still runs: 16 core-hours when the module loaded
    assert hours["ann"] == pytest.approx(running, rel=0.05) and hours["uma"] == pytest.approx(4.0, rel=0.01)
    assert [a["account"] for a in util["accounts"]] == ["acct-ann", "acct-uma"]
    assert site.ok("health")["nodes"] >= 3

    alerts = site.api("alerts")  # no alert rules on this root: said so, not a crash
    assert alerts.status == 409 and alerts.json()["error"]["code"] == "alerts_off"


def append(site, *lines: str) -> None:
    with open(site.tree.tmp / "logs" / "app.log", "a") as f:
        f.write("".join(line + "\n" for line in lines))


def test_logs_are_searched_and_followed_over_http(site):
    append(site, "hello 1", "other", "hello 2")
    got = wait_for(lambda: (r := site.ok("logs", node="node-*", grep="^hello", since="1h"))["lines"]
                   and len(r["lines"]) == 2 and r, what="two stored lines found over HTTP")
    assert [x["line"] for x in got["lines"]] == ["hello 1", "hello 2"]
    assert {"ts", "node", "source", "path", "line"} <= set(got["lines"][0])
    assert got["lines"][0]["node"] == "node-1" and got["lines"][0]["source"] == "app"
    # follow: what was stored since the cursor, and only that
    assert site.ok("logs", grep="^hello", after=got["cursor"])["lines"] == []
    append(site, "hello 3")
    more = wait_for(lambda: site.ok("logs", grep="^hello", after=got["cursor"])["lines"], what="the followed line")
    assert [x["line"] for x in more] == ["hello 3"]
    assert site.ok("logs", node="node-2", since="1h")["lines"] == []  # not the node that has the file
    bad = site.api("logs", grep="(")
    assert bad.status == 400 and "not a regex" in bad.json()["error"]["message"]
    assert site.api("logs", after="soon").status == 400
    assert site.get("/logs").status == 200


def test_series_tier_follows_range_and_step_and_can_be_chosen(site):
    assert site.ok("series", node="node-1", series="node_load1", since="1h", step=3)["tier"] == "raw"
    assert site.ok("series", node="node-1", series="node_load1", since="1w", step=600)["tier"] == "1m"
    assert site.ok("series", node="node-1", series="node_load1", since="30d", step=2600)["tier"] == "30m"
    got = site.ok("series", node="node-1", series="node_load1", since="1h", tier="1m")
    assert got["tier"] == "1m" and got["step"] == 60
    for p in got["points"]:
        assert {"ts", "min", "max", "avg", "count"} <= set(p)


def test_a_json_post_runs_an_op_like_a_get(site):
    a = site.get("/api/v1/latest", method="POST", body=json.dumps({"node": "node-2", "series": ["node_load1"]}).encode(),
                 headers={"Content-Type": "application/json"})
    assert a.status == 200 and list(a.json()["result"]["values"]) == ["node_load1"]


def test_metrics_keep_the_prometheus_text(site):
    a = site.get("/metrics")
    assert a.status == 200 and a.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'clumon_node_up{node="node-1",aggregator="agg-1"} 1' in a.text


def test_pages_and_assets_are_served(site):
    for path in ("/", "/rack/agg-1", "/node/node-1", "/events", "/jobs", "/utilization"):
        a = site.get(path)
        assert a.status == 200 and "/static/app.js" in a.text, path
    a = site.get("/static/app.js", headers={"Accept-Encoding": "gzip"})
    assert a.status == 200 and a.headers.get("Content-Encoding") == "gzip"
    assert site.get("/login").status == 303  # no tokens: nothing to log in to


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path,words", [
    ("/api/v1/events?limit=abc", ["limit", "integer", "abc"]),
    ("/api/v1/events?since=yesterday", ["since", "duration", "yesterday"]),
    ("/api/v1/series?node=node-1&series=node_load1&tier=5m", ["tier", "5m"]),
    ("/api/v1/series?node=node-1&series=node_load1&step=-1", ["step"]),
    ("/api/v1/series?node=node-1", ["missing", "series"]),
    ("/api/v1/series?node=node-1&series=node_load1&since=1h&until=2h", ["range is empty"]),
    ("/api/v1/nodes?states=bogus", ["states"]),
    ("/api/v1/utilization?by=year", ["by"]),
    ("/api/v1/overview?top=0", ["top", "out of range"]),
])
def test_bad_parameters_are_400_with_one_line(site, path, words):
    a = site.get(path)
    assert a.status == 400, (path, a.status, a.body)
    err = a.json()["error"]
    assert err["code"] == "bad_args" and "\n" not in err["message"]
    for w in words:
        assert w in err["message"], (w, err["message"])


def test_a_post_must_be_a_json_map(site):
    for body, ctype in ((b"node=node-1", "application/x-www-form-urlencoded"), (b"{not json", "application/json"),
                        (b"[1, 2]", "application/json")):
        a = site.get("/api/v1/latest", method="POST", body=body, headers={"Content-Type": ctype})
        assert a.status == 400 and "\n" not in a.json()["error"]["message"], a.body


def test_unknown_paths_ops_and_nodes_are_404(site):
    for path in ("/api/v1/nope", "/api/v1/nodes/extra", "/api/v2/nodes", "/no/such/page"):
        a = site.get(path)
        assert a.status == 404, (path, a.status)
        if path.startswith("/api/"):
            assert a.json()["ok"] is False and "\n" not in a.json()["error"]["message"]
    a = site.api("latest", node="node-99")
    assert a.status == 404 and a.json()["error"]["code"] == "unknown_node"
    a = site.api("series", node="node-1", series="node_lod1")
    assert a.status == 404 and "node_load1" in a.json()["error"]["message"]  # the near miss is named


def test_an_op_that_changes_things_needs_a_post(site):
    a = site.api("forget", node="node-1")
    assert a.status == 405 and "POST" in a.json()["error"]["message"]
    assert site.ok("latest", node="node-1")["state"] == "up"


def test_large_ranges_and_row_counts_are_bounded(site):
    a = site.api("series", node="node-1", series="node_load1", since="30d", tier="raw")
    assert a.status == 400 and "coarser tier" in a.json()["error"]["message"]
    a = site.api("series", node="node-1", series="node_load1", since="30d", step=1)
    assert a.status == 400 and "step" in a.json()["error"]["message"]
    a = site.api("events", limit=100000)
    assert a.status == 400 and "at most 5000" in a.json()["error"]["message"]
    # without a tier or step the range picks one: a year reads daily rollups, not raw points
    got = site.ok("series", node="node-1", series="node_load1", since="365d")
    assert got["tier"] in ("2h", "1d") and len(got["points"]) <= 20000


# --- tokens and roles -----------------------------------------------------------------------


def test_without_a_token_nothing_is_served(secured):
    for path in ("/api/v1/overview", "/metrics", "/static/app.js"):
        a = secured.get(path)
        assert a.status == 401 and a.headers["WWW-Authenticate"].startswith("Bearer"), path
    assert secured.get("/api/v1/overview", token="x" * 48).status == 401
    a = secured.get("/node/node-1")
    assert a.status == 303 and a.headers["Location"] == "/login?next=/node/node-1"
    assert secured.get("/login").status == 200


def test_the_login_cookie_is_accepted_like_the_header(secured):
    bad = secured.get("/login", method="POST", body=b"token=wrong&next=/events",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert bad.status == 401 and "not accepted" in bad.text
    a = secured.get("/login", method="POST", body=f"token={secured.tokens['ann']}&next=//evil.example/".encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert a.status == 303 and a.headers["Location"] == "/"  # no open redirect
    cookie = a.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    value = cookie.split(";")[0]
    assert secured.get("/api/v1/overview", headers={"Cookie": value}).status == 200
    assert secured.get("/events", headers={"Cookie": value}).status == 200


def test_an_admin_token_reads_everything(secured):
    assert secured.ok("latest", "ann", node="node-2")["state"] == "up"
    assert len(secured.ok("grid", "ann")["nodes"]) == 2
    for path in ("/", "/rack/agg-2", "/node/node-2", "/events", "/jobs", "/utilization"):
        assert secured.get(path, "ann").status == 200, path
    assert '"role": "admin"' in secured.get("/", "ann").text


def test_an_operator_reads_their_subtree_only(secured):
    assert secured.ok("latest", "olga", node="node-1")["state"] == "up"
    a = secured.api("latest", "olga", node="node-2")
    assert a.status == 403 and a.json()["error"]["code"] == "forbidden" and a.json()["error"]["role"] == "operator"
    assert [r["node"] for r in secured.ok("grid", "olga")["nodes"]] == ["node-1"]
    assert all(e["subject"] in ("node-1",) for e in secured.ok("events", "olga", since="1h"))
    assert secured.get("/node/node-1", "olga").status == 200
    page = secured.get("/node/node-2", "olga")
    assert page.status == 403 and "not the operator's: node-2" in page.text


def test_a_user_sees_the_overview_and_nothing_per_node(secured):
    o = secured.ok("overview", "uma")
    assert o["states"]["up"] == 2 and o["hottest_cpu"] == [] and o["events"] == []
    for op, params in (("latest", {"node": "node-1"}), ("series", {"node": "node-1", "series": "node_load1"}),
                       ("grid", {}), ("events", {})):
        a = secured.api(op, "uma", **params)
        assert a.status == 403 and a.json()["error"]["role"] == "user", (op, a.body)
    for path in ("/node/node-1", "/rack/agg-1", "/events"):
        assert secured.get(path, "uma").status == 403, path  # refused, not only hidden
    page = secured.get("/", "uma")
    assert page.status == 200 and '"pages": ["overview", "jobs", "utilization"]' in page.text


def test_logs_are_an_admins_and_their_nodes_operators(secured):
    append(secured, "secret 1")
    wait_for(lambda: secured.ok("logs", "ann", grep="secret")["lines"], what="node-2's line, for the admin")
    assert secured.api("logs", "uma").status == 403 and secured.get("/logs", "uma").status == 403
    # olga operates agg-1/* (node-1): node-2's lines are cut from her answers and refused by name
    assert secured.ok("logs", "olga", grep="secret")["lines"] == []
    assert secured.api("logs", "olga", node="node-2").status == 403


def test_a_user_sees_their_own_jobs_only(secured):
    assert {j["user"] for j in secured.ok("jobs", "uma")} == {"uma"}
    assert {j["user"] for j in secured.ok("jobs", "uma", user="ann")} == {"uma"}  # asking for another's: still hers
    assert {j["user"] for j in secured.ok("jobs", "ann")} == {"ann", "uma"}
    a = secured.api("job", "uma", id="101")
    assert a.status == 403 and "not uma's" in a.json()["error"]["message"]
    assert secured.get("/jobs", "uma").status == 200 and secured.get("/utilization", "uma").status == 200


def test_a_token_without_a_role_gets_nothing(secured):
    a = secured.api("overview", "nobody")
    assert a.status == 403 and "no role" in a.json()["error"]["message"]
    assert secured.get("/", "nobody").status == 403


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text,words", [
    ('http = "0.0.0.0:{port}"\n', ["'http'", "not loopback", "http_tokens"]),
    ('http = "127.0.0.1:{port}"\nmetrics = "127.0.0.1:1"\n', ["'http' and 'metrics'", "give only 'http'"]),
    ('http = "nowhere"\n', ["'http'", "host:port"]),
])
def test_a_bad_http_address_stops_the_root_with_one_line(tmp_path, text, words):
    cfg = tmp_path / "root.toml"
    cfg.write_text(text.format(port=free_port()))
    out = subprocess.run([sys.executable, "-m", "clumon.root", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_a_rack_page_is_an_operators_when_all_its_nodes_are(secured):
    assert [r["node"] for r in secured.ok("grid", "olga", aggregator="agg-1")["nodes"]] == ["node-1"]
    assert secured.api("grid", "olga", aggregator="agg-2").status == 403
    assert secured.get("/rack/agg-1", "olga").status == 200
    assert secured.get("/rack/agg-2", "olga").status == 403
