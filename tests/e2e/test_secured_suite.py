"""Everything that worked before works with keys on: the tree's end-to-end tests
run again with CurveZMQ on every link (``CLUMON_TEST_CURVE=1``: the harness gives
every daemon its key and the tests' clients theirs), in a pytest of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
#: tests that start the real daemons through the harness and talk to them only
#: through the root's query socket and the CLI (hand-made sockets have their own
#: secured variants: test_malformed_frames, test_security)
SECURED = ["test_tree.py", "test_chain.py", "test_faults.py", "test_sync_read_store.py", "test_agent_masks.py",
           "test_duplicate_name.py"]


@pytest.mark.timeout(900)
def test_the_trees_end_to_end_tests_pass_with_keys_on(tmp_path):
    if os.environ.get("CLUMON_TEST_CURVE") == "1":
        pytest.skip("already inside the secured run")
    env = {**os.environ, "CLUMON_TEST_CURVE": "1"}
    env.pop("CLUMON_KEY", None)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
                          str(tmp_path / "secured"), *[str(HERE / f) for f in SECURED]],
                         cwd=HERE.parents[1], env=env, capture_output=True, text=True, timeout=880)
    tail = "\n".join(out.stdout.splitlines()[-30:])
    assert out.returncode == 0, tail + out.stderr[-2000:]
    assert " passed" in tail and " failed" not in tail and " error" not in tail, tail
