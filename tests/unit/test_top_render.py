"""``clumon top`` at 80x24: every node name, aggregator name and figure whole."""

from __future__ import annotations

import time

from rich.console import Console

from clumon.cli.top import render


def overview(n: int = 10) -> dict:
    rows = [{"node": f"rack-{i:02d}-node-{100 + i}", "aggregator": f"rack-{i:02d}-agg", "state": "up",
             "cpu": 0.999 - i / 100, "memory": 0.5 + i / 100, "load1": 12.25 + i} for i in range(n)]
    return {"states": {"up": n, "down": 1}, "nodes": n + 1, "hottest_cpu": rows,
            "hottest_memory": rows, "hottest_load1": rows,
            "aggregators": [{"aggregator": "rack-00-agg", "state": "up", "nodes": n, "up": n,
                             "avg_cpu": 0.5, "max_cpu": 0.999, "avg_memory": 0.6, "max_memory": 0.7,
                             "avg_load1": 3.5, "max_load1": 21.25, "min_cpu": 0.0}],
            "events": [{"ts": time.time(), "subject": "rack-03-node-103", "type": "state",
                        "message": "rack-03-node-103: up -> down, after 30 s without a frame from it", "attrs": {}}]}


def test_the_live_view_fits_80x24_with_names_and_figures_whole():
    console = Console(width=80, height=24, record=True, color_system=None)
    console.print(render(overview(), "tcp://root.example:7401", console.width))
    text = console.export_text()
    lines = text.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines), text
    for i in range(3):  # the top rows of the table, whole
        assert f"rack-{i:02d}-node-{100 + i}" in text and f"rack-{i:02d}-agg" in text, text
        assert f"{100 * (0.999 - i / 100):5.1f}%".strip() in text and f"{12.25 + i:.2f}" in text, text
    assert "rack-00-agg" in text and "99.9%" in text and "21.25" in text
    assert "rack-03-node-103" in text and "…" not in text, text
