"""The cheap look for entry-point declarations that spares the agent importlib.metadata."""

from __future__ import annotations

from clumon.agent.plugins import group_declared


def dist(site, name: str, entry_points: str | None) -> None:
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    if entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points)


def test_group_declared_only_where_some_distribution_declares_it(tmp_path) -> None:
    site = tmp_path / "site"
    dist(site, "other", "[console_scripts]\nx = other:main\n")
    dist(site, "bare", None)
    assert not group_declared("clumon.collectors", [str(site), str(tmp_path / "missing")])
    dist(site, "plugin", "[clumon.collectors]\ngpfs = plugin:Gpfs\n")
    assert group_declared("clumon.collectors", [str(site)])


def test_a_zip_on_the_path_is_assumed_to_declare_it(tmp_path) -> None:
    (tmp_path / "eggs.zip").write_bytes(b"PK")
    assert group_declared("clumon.collectors", [str(tmp_path / "eggs.zip")])
