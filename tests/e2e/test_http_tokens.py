"""The root's HTTP port with ``http_tokens``: every request needs a bearer token,
made from a key by ``clumon keys token``, revoked by deleting its line."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request

from harness import free_port, wait_for


def get(port: int, token: str | None = None) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            assert exc.headers["WWW-Authenticate"].startswith("Bearer")
        return exc.code


def clumon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clumon.cli", *args], capture_output=True, text=True, timeout=60)


def test_metrics_need_a_token_made_from_a_key_and_a_revoked_one_is_refused(tree, tmp_path):
    keys = tmp_path / "keys"
    for name in ("prom", "ann"):
        assert clumon("keys", "gen", name, "--dir", str(keys)).returncode == 0
    tokens = tmp_path / "http_tokens"
    made = clumon("keys", "token", "prom", "--dir", str(keys), "--append", str(tokens))
    assert made.returncode == 0, made.stderr
    prom_token = made.stdout.strip()
    assert tokens.read_text().split() == ["prom", prom_token]
    # the same key gives the same token, and appending it again adds no line
    again = clumon("keys", "token", "prom", "--dir", str(keys), "--append", str(tokens))
    assert again.stdout.strip() == prom_token and len(tokens.read_text().splitlines()) == 1

    port = free_port()
    root = tree.root(metrics=f"127.0.0.1:{port}", http_tokens=str(tokens))
    assert get(port, prom_token) == 200
    assert get(port) == 401
    assert get(port, "x" * 64) == 401
    assert get(port, prom_token[:-1]) == 401

    # a token added while the root runs is taken within a second or so, no restart
    ann = clumon("keys", "token", "ann", "--dir", str(keys), "--append", str(tokens)).stdout.strip()
    wait_for(lambda: get(port, ann) == 200, what="ann's new token accepted")
    # ... and one removed is refused from then on
    tokens.write_text(f"ann {ann}\n")
    wait_for(lambda: get(port, prom_token) == 401, what="prom's revoked token refused")
    assert get(port, ann) == 200

    from clumon.cli.client import Client
    with Client(root.query) as c:
        assert c.call("health")["http_refused"] >= 4


def test_a_key_without_its_secret_file_gives_one_line(tmp_path):
    out = clumon("keys", "token", "nobody", "--dir", str(tmp_path))
    assert out.returncode == 2 and "cannot read key file" in out.stderr and len(out.stderr.splitlines()) == 1
