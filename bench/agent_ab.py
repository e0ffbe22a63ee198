"""Side by side: the agent of a git revision against the working tree's, on the same box.

For a change to the agent whose effect is a few percent, sequential runs of
bench/agent_overhead.py are too noisy (0.141-0.154 % for the same code). This runs
both agents at once against one receiver and compares their run time (schedstat, ns).
Two agents ticking at once are not equal, though: the one whose tick comes just after
the other's finds the interpreter's code in the caches (an A/A run showed ~5 % for
the one started second). So the rounds alternate which one starts first, and the
ratio is the geometric mean over the rounds.

    python bench/agent_ab.py REV [--duration 60] [--rounds 2]

Prints one JSON line: each side's CPU % per round, the ratio working/REV (< 1: the
working tree is cheaper), and the RSS of each at the end of each round. An A/A run
(HEAD against an unchanged working tree, 2 rounds of 45 s) gave 1.04: read a ratio
within ±5 % as no difference. RSS is not comparable here: REV runs from a fresh
export whose modules are compiled at start (~0.2 MiB more).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import agent_overhead as ao  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "aggregator", "root", "proto")


def export(rev: str, into: Path) -> Path:
    """The revision's packages as an importable ``clumon`` tree; returns the PYTHONPATH entry."""
    src = into / "src"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, *PACKAGES], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    pkg = into / "tree" / "clumon"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for name in PACKAGES:
        (pkg / name).symlink_to(src / name)
    return into / "tree"


def start(label: str, pythonpath: str | None, port: int, workdir: Path) -> subprocess.Popen:
    saved = os.environ.pop("PYTHONPATH", None)
    if pythonpath:
        os.environ["PYTHONPATH"] = pythonpath
    try:
        return ao.start_agent(label, port, workdir)
    finally:
        os.environ.pop("PYTHONPATH", None)
        if saved is not None:
            os.environ["PYTHONPATH"] = saved


def one_round(base_path: str, first: str, duration: float, warmup: float) -> dict:
    rx = ao.Receiver()
    rx.start()
    procs: dict[str, subprocess.Popen] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for side in ((first, "work" if first == "base" else "base")):
                procs[side] = start(side, base_path if side == "base" else None, rx.port, Path(tmp))
            time.sleep(warmup)
            n0 = {s: ao.run_ns(p.pid) for s, p in procs.items()}
            t0 = time.monotonic()
            time.sleep(duration)
            n1 = {s: ao.run_ns(p.pid) for s, p in procs.items()}
            wall = time.monotonic() - t0
            return {"first": first,
                    **{f"{s}_pct": round((n1[s] - n0[s]) / 1e9 / wall * 100, 4) for s in procs},
                    **{f"{s}_rss_mib": round(ao.status_mib(p.pid, "VmRSS"), 2) for s, p in procs.items()}}
        finally:
            for p in procs.values():
                p.send_signal(signal.SIGTERM)
            for p in procs.values():
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            rx.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev", help="git revision to compare the working tree with")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2, help="even: each side starts first as often")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base_path = str(export(args.rev, Path(tmp)))
        rounds = [one_round(base_path, "base" if i % 2 == 0 else "work", args.duration, args.warmup)
                  for i in range(args.rounds)]
    ratios = [r["work_pct"] / r["base_pct"] for r in rounds if r["base_pct"] > 0]
    print(json.dumps({
        "bench": "agent_ab", "base": args.rev, "host_cores": os.cpu_count(), "python": platform.python_version(),
        "duration_s": args.duration, "rounds": rounds,
        "ratio": round(math.exp(sum(map(math.log, ratios)) / len(ratios)), 4) if ratios else None,
        "load": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
