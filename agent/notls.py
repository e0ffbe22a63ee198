"""A stand-in ``ssl`` module for the agent, which speaks no TLS.

uvloop imports ``ssl`` unconditionally (``uvloop/includes/__init__.py``) and asyncio
whenever it can; the import maps OpenSSL (libcrypto, libssl, ``_ssl``): 4.4 MiB of
the agent's ~30 MiB resident memory, on every compute node, for a protocol the agent
never uses (its link is ZeroMQ over TCP; CURVE, when it lands, is libzmq's and
libsodium's). The agent's ``main()`` puts this stand-in in ``sys.modules`` before
anything imports asyncio. It holds what uvloop and asyncio look up when they are
imported, and nothing works: making a TLS context raises ``TLSUnavailable``.

Should a later uvloop want more of ``ssl`` at import, ``main()`` starts the agent
again with the real module (``REAL_SSL_ENV``) rather than fail; a unit test imports
uvloop and runs a loop under the stand-in, so CI finds such a uvloop first. An agent
with entry-point collectors installed keeps the real module (a plugin may speak
HTTPS), and so does one started with ``CLUMON_AGENT_REAL_SSL=1``.
"""

from __future__ import annotations

import sys
import types

#: set in the environment to keep the real ``ssl`` module
REAL_SSL_ENV = "CLUMON_AGENT_REAL_SSL"


class TLSUnavailable(RuntimeError):
    """TLS was asked of a process that runs with the stand-in ``ssl`` module."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__("clumon-agent speaks no TLS (its ssl module is a stand-in: clumon.agent.notls)")


class SSLError(OSError):
    pass


class SSLZeroReturnError(SSLError):
    pass


class SSLWantReadError(SSLError):
    pass


class SSLWantWriteError(SSLError):
    pass


class SSLSyscallError(SSLError):
    pass


class SSLEOFError(SSLError):
    pass


class CertificateError(ValueError):
    pass


class SSLContext:
    """Cannot be made: there is no TLS here."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TLSUnavailable()


class MemoryBIO(SSLContext):
    """Cannot be made: there is no TLS here."""


def create_default_context(*args: object, **kwargs: object) -> SSLContext:
    raise TLSUnavailable()


def module() -> types.ModuleType:
    """The stand-in module: ssl's names that uvloop and asyncio read at import."""
    m = types.ModuleType("ssl", __doc__)
    for obj in (SSLError, SSLZeroReturnError, SSLWantReadError, SSLWantWriteError, SSLSyscallError,
                SSLEOFError, CertificateError, SSLContext, MemoryBIO, create_default_context):
        setattr(m, obj.__name__, obj)
    # the values of OpenSSL's SSL_ERROR_* codes, as the real module has them
    m.SSL_ERROR_WANT_READ, m.SSL_ERROR_WANT_WRITE, m.SSL_ERROR_SYSCALL = 2, 3, 5
    m.CLUMON_STAND_IN = True
    return m


def install() -> bool:
    """Put the stand-in in ``sys.modules``; False (and nothing done) when ``ssl`` is
    already imported: a process that has the real module keeps it."""
    if "ssl" in sys.modules:
        return False
    sys.modules["ssl"] = module()
    return True


def installed() -> bool:
    """Whether this process runs with the stand-in."""
    return getattr(sys.modules.get("ssl"), "CLUMON_STAND_IN", False)
