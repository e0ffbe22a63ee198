"""The agent's stand-in ssl module: uvloop and asyncio run under it, TLS is refused
with a clear error, and a uvloop that wants more of ssl restarts the agent with the
real module instead of failing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from clumon.agent import notls


def run(code: str, env: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})}, cwd=cwd)


def test_uvloop_and_asyncio_run_under_the_stand_in():
    out = run("""
        import sys
        from clumon.agent import notls
        assert notls.install()
        import asyncio, subprocess, uvloop

        async def main():
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, sum, [1, 2]) == 3
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "print(7)",
                                                        stdout=subprocess.PIPE)
            assert (await proc.communicate())[0].strip() == b"7"
            await asyncio.sleep(0.01)
            return type(loop).__module__

        print(uvloop.run(main()), notls.installed(), "_ssl" in sys.modules)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["uvloop", "True", "False"]


def test_tls_is_refused_with_a_clear_error():
    ssl = notls.module()
    with pytest.raises(notls.TLSUnavailable, match="speaks no TLS"):
        ssl.create_default_context()
    with pytest.raises(RuntimeError, match="speaks no TLS"):
        ssl.SSLContext()


def test_install_keeps_a_real_ssl_already_imported():
    import ssl  # noqa: F401  (this test process has the real one)

    assert not notls.install()
    assert not notls.installed()


def test_a_uvloop_that_wants_more_of_ssl_restarts_the_agent_with_the_real_module(tmp_path):
    """A uvloop whose import fails under the stand-in: the agent starts again with
    ``CLUMON_AGENT_REAL_SSL=1`` (here the fake uvloop then stops the run)."""
    fake = tmp_path / "uvloop"
    fake.mkdir()
    (fake / "__init__.py").write_text(textwrap.dedent("""
        import os, ssl, sys
        if os.environ.get("CLUMON_AGENT_REAL_SSL") != "1":
            ssl.SOMETHING_NEW  # AttributeError under the stand-in
        print("restarted; real ssl:", not getattr(ssl, "CLUMON_STAND_IN", False), sys.argv[1:], flush=True)
        raise SystemExit(0)
    """))
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    out = run("""
        import sys
        from clumon.agent.__main__ import main
        sys.exit(main(["--name", "n1"]))
    """, env=env, cwd=str(tmp_path))
    assert "restarting with the real ssl module" in out.stderr, out.stderr
    assert "restarted; real ssl: True ['--name', 'n1']" in out.stdout, (out.stdout, out.stderr)


def test_an_agent_with_entry_point_collectors_keeps_the_real_ssl(tmp_path):
    """A plugin may speak HTTPS (a BMC, a scheduler's REST API), and urllib3 reads ssl
    at import: with a clumon.collectors entry point installed, no stand-in."""
    code = "from clumon.agent.__main__ import _without_tls; print(_without_tls())"
    assert run(code).stdout.strip() == "True"
    info = tmp_path / "gpu_collector-1.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text("[clumon.collectors]\ngpu = gpu_collector:make\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    assert run(code, env=env).stdout.strip() == "False"
    assert run(code, env={"CLUMON_AGENT_REAL_SSL": "1"}).stdout.strip() == "False"
