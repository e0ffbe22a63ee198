"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright,
against a running secured tree (a root, two aggregators, four agents; roles and
tokens). Screenshots of each page go to tests/artifacts/.

Skips when /usr/bin/chromium (or Playwright) is absent, except under CI=true,
where that is a failure: ``.ci/run`` installs both.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from web_site import NODE_DOWN_RULE, start_site

from harness import kill9, wait_for

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
#: the harness's aggregators call a child down after this long without a frame
DOWN_AFTER = 3.0


def _browser_or_skip():
    why = None
    if not Path(CHROMIUM).exists():
        why = f"{CHROMIUM} is absent (apt-get install chromium)"
    else:
        import importlib.util
        if importlib.util.find_spec("playwright") is None:
            why = "playwright is not installed (pip install '.[test]')"
    if why is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the browser tests cannot run: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    _browser_or_skip()
    now = time.time()
    jobs = [("101", "ann", "running", 8, now - 7200, None, "node-1"),
            ("102", "uma", "finished", 4, now - 5400, now - 1800, "node-2")]
    s = start_site(tmp_path_factory.mktemp("browser"), secured=True, aggregators=2, agents_per_agg=2, jobs=jobs,
                   alerts=NODE_DOWN_RULE, scheduler_on="node-1", logs_on="node-3")
    yield s
    s.tree.stop_all()


@pytest.fixture(scope="module")
def browser(site):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


_open_pages: list = []


@pytest.fixture(autouse=True)
def _close_pages():
    """A test's pages are closed after it, failed or not: no page keeps polling into the next test."""
    yield
    while _open_pages:
        page = _open_pages.pop()
        if not page.is_closed():
            page.close()


def login(browser, site, who: str, path: str = "/"):
    """A page logged in through the login form, as a person would."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    _open_pages.append(page)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(site.url + path)
    assert "/login" in page.url
    page.fill("#token", site.tokens[who])
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(site.url + path) + r"($|\?)"))
    page.js_errors = errors
    return page


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"web-{name}.png"), full_page=True)


def test_the_overview_shows_four_nodes_up(browser, site):
    page = login(browser, site, "ann")
    page.wait_for_selector("[data-testid=state-up]:text-is('4')")
    assert page.text_content("[data-testid=nodes-total]") == "4"
    page.wait_for_selector("#alerts p:text('none firing')")
    # node-1 polls a (recorded) Slurm cluster: its figures are on the overview
    page.wait_for_selector("#scheduler h3:text('hpc')", timeout=60_000)
    assert "running" in page.text_content("#scheduler")
    page.wait_for_selector("#aggregators a[href='/rack/agg-1']")
    page.wait_for_selector("#events td")
    shot(page, "overview")
    page.click("#aggregators a[href='/rack/agg-2']")
    page.wait_for_selector(".heat .cell[data-node=node-4]")
    assert page.locator(".heat .cell").count() == 2
    page.wait_for_selector("#rack-trends .chart[data-series=node_load1][data-points]")
    shot(page, "rack")
    page.click(".heat .cell[data-node=node-3]")
    page.wait_for_url(re.compile(r"/node/node-3"))
    for path, sel, name in (("/events", "#event-list td", "events"), ("/jobs", "#job-list tbody tr", "jobs"),
                            ("/utilization", "#util section[data-cluster=c1] .util-chart canvas", "utilization")):
        page.goto(site.url + path)
        page.wait_for_selector(sel)
        shot(page, name)
    page.goto(site.url + "/jobs")
    page.wait_for_selector("#job-list tbody tr:has-text('hpc')")  # the recorded cluster's 8 jobs ...
    clusters = page.eval_on_selector_all("#job-list tbody tr td:first-child", "cells => cells.map(c => c.textContent)")
    assert clusters.count("c1") == 2 and clusters.count("hpc") >= 1  # ... and the 2 stored before
    assert page.js_errors == []
    page.close()


def test_a_node_page_draws_non_empty_charts(browser, site):
    page = login(browser, site, "ann", "/node/node-1")
    page.wait_for_selector("#chart-node_load1[data-points]:not([data-points='0'])")
    page.wait_for_selector("#chart-node_cpu_ratio[data-points]:not([data-points='0'])")
    assert page.locator("#chart-node_load1 canvas").count() >= 1
    assert page.get_attribute("#chart-node_load1", "data-tier") == "raw"
    assert page.text_content("#node-state") in ("up", "")
    page.wait_for_selector("#node-events td:text-matches('node-1: .* -> up')")
    # a group closed at first loads its charts when opened
    page.click("details[data-source=memory] summary")
    page.wait_for_selector("#chart-node_memory_used_ratio[data-points]:not([data-points='0'])")
    # the legend toggles a series
    legend = page.locator("#chart-node_cpu_ratio .u-legend .u-series").nth(1)
    legend.click()
    assert "u-off" in (legend.get_attribute("class") or "")
    shot(page, "node")
    assert page.js_errors == []
    page.close()


def test_the_week_button_and_a_drag_change_the_range_and_the_tier(browser, site):
    page = login(browser, site, "ann", "/node/node-2")
    chart = "#chart-node_load1"
    page.wait_for_selector(f"{chart}[data-tier=raw]")
    asked: list[dict] = []
    page.on("request", lambda r: asked.append(parse_qs(urlparse(r.url).query))
            if "/api/v1/series" in r.url and "series=node_load1" in r.url else None)

    page.click("button[data-range='1w']")
    page.wait_for_selector(f"{chart}[data-tier='1m']")
    assert "range=1w" in page.url
    since, until = int(page.get_attribute(chart, "data-since")), int(page.get_attribute(chart, "data-until"))
    assert abs((until - since) - 7 * 86400) < 120
    assert asked and float(asked[-1]["until"][0]) - float(asked[-1]["since"][0]) > 6 * 86400
    shot(page, "node-week")

    # drag across the right-most 3 % of the week (about five hours): raw points again
    box = page.locator(f"{chart} .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.97, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.985, y, steps=5)
    page.mouse.move(box["x"] + box["width"] - 1, y, steps=5)
    page.mouse.up()
    page.wait_for_selector(f"{chart}[data-tier=raw]")
    query = parse_qs(urlparse(page.url).query)
    start, end = int(query["from"][0]), int(query["to"][0])
    assert 3600 < end - start < 0.1 * 7 * 86400 and start > since and end <= until + 60
    assert int(page.get_attribute(chart, "data-since")) == start
    page.wait_for_selector(f"{chart}[data-points]:not([data-points='0'])")
    # the chart's permalink carries the range
    href = page.get_attribute(f"{chart} a.permalink", "href")
    assert f"from={start}" in href and f"to={end}" in href and href.endswith("#chart-node_load1")
    shot(page, "node-zoomed")
    # a custom range typed in: the last two hours
    start = int(time.time()) // 60 * 60 - 7200
    page.fill("#custom-from", time.strftime("%Y-%m-%dT%H:%M", time.localtime(start)))
    page.fill("#custom-to", time.strftime("%Y-%m-%dT%H:%M", time.localtime(start + 7200)))
    page.click("#custom-go")
    page.wait_for_selector(f"{chart}[data-since='{start}']")
    assert f"from={start}" in page.url and f"to={start + 7200}" in page.url
    page.close()


def test_a_killed_agent_turns_down_on_the_overview_without_a_reload(browser, site):
    agg2 = next(d for d in site.tree.daemons if d.label == "agg-2")
    page = login(browser, site, "ann")
    page.wait_for_selector("[data-testid=state-up]:text-is('4')")
    extra = site.tree.agent("node-5", [agg2.port])
    page.wait_for_selector("[data-testid=state-up]:text-is('5')", timeout=60_000)
    page.evaluate("window.__same_page = true")
    kill9(extra)
    # the floor: down on the page within down_after + 5 s, the page not reloaded
    page.wait_for_selector("[data-testid=state-down]:text-is('1')", timeout=(DOWN_AFTER + 5) * 1000)
    assert page.text_content("[data-testid=state-up]") == "4"
    assert page.evaluate("window.__same_page") is True
    # ... and the alert rule for a node down fires, listed with the node on the same page
    page.wait_for_selector("#alerts tr:has-text('NodeDown'):has-text('node-5')")
    shot(page, "overview-node-down")
    page.close()


def test_roles_hide_and_refuse_pages(browser, site):
    page = login(browser, site, "uma")
    page.wait_for_selector("[data-testid=state-up]")
    assert page.locator("nav a[data-page=events]").count() == 0
    assert page.locator("nav a[data-page=jobs]").count() == 1
    assert page.locator("#aggregators a").count() == 0  # no rack links for a user
    assert page.locator("#events").count() == 0
    shot(page, "user-overview")
    answer = page.goto(site.url + "/node/node-1")
    assert answer.status == 403
    assert "a user sees site-wide figures" in page.text_content("#forbidden")
    shot(page, "user-refused")
    page.goto(site.url + "/jobs")  # a user's jobs page: their own jobs only
    page.wait_for_selector("#job-list tbody tr")
    assert page.locator("#job-list tbody tr").count() == 1
    assert "uma" in page.text_content("#job-list tbody tr") and "ann" not in page.text_content("#job-list tbody")
    page.close()

    page = login(browser, site, "olga", "/rack/agg-1")
    page.wait_for_selector(".heat .cell[data-node=node-2]")
    assert page.locator(".heat .cell").count() == 2
    assert page.goto(site.url + "/rack/agg-2").status == 403
    assert page.goto(site.url + "/node/node-3").status == 403
    page.close()


def teardown_module(module):
    if ARTIFACTS.exists() and not any(ARTIFACTS.iterdir()):
        shutil.rmtree(ARTIFACTS)


def test_the_logs_page_searches_and_follows(browser, site):
    app = site.tree.tmp / "logs" / "app.log"
    with open(app, "a") as f:
        f.write("kernel: Out of memory: Killed process 4242 (solver)\nquiet line\n")
    # a search is a snapshot (following is what adds lines): search once the line is stored
    wait_for(lambda: site.ok("logs", "ann", grep="4242")["lines"], what="the OOM line stored")
    page = login(browser, site, "ann", "/logs?grep=Killed&since=1h")
    page.wait_for_selector("#log-list td.mono:has-text('Killed process 4242')", timeout=30_000)
    assert page.locator("#log-list tbody tr").count() == 1  # the regex kept the other line out
    assert page.text_content("#log-list tbody tr td:nth-child(2)") == "node-3"
    page.check("#log-follow")
    with open(app, "a") as f:
        f.write("kernel: Out of memory: Killed process 4343 (mesher)\n")
    page.wait_for_selector("#log-list td.mono:has-text('Killed process 4343')", timeout=30_000)
    assert page.locator("#log-list tbody tr").count() == 2
    assert "follow=1" in page.url and "grep=Killed" in page.url  # the search is its own link
    shot(page, "logs")
    assert page.js_errors == []
