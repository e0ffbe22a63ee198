"""Bearer tokens for the root's HTTP port (``/metrics`` and whatever else it serves).

Bound to loopback (the default), the port is as open as the machine. Bound to
any other address it needs ``http_tokens``: a file of ``NAME TOKEN`` lines
(``#`` comments, blank lines), and then every request must carry
``Authorization: Bearer TOKEN``. NAME is the principal the token speaks for: the
same name a CurveZMQ client key has, so the roles file says what it may read.

``clumon keys token NAME`` derives a client's token from its secret key (an HMAC,
so the token changes when the key is rotated and no second secret is kept) and
appends the line. The file is read again when it changes (checked at most once a
second), so adding or revoking a token needs no restart.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import time
from pathlib import Path

#: tokens shorter than this are refused when the file is read: they could be guessed
MIN_TOKEN_CHARS = 24
#: what the HMAC is taken over: a fixed label, so the token is for this use only
TOKEN_LABEL = b"clumon-http-token-v1"


class TokenFileError(ValueError):
    """A tokens file that cannot be used; the text is one line naming the file."""


def derive_token(secret_key: bytes) -> str:
    """The token of a CurveZMQ secret key (its z85 text): HMAC-SHA256, hex."""
    return hmac.new(secret_key, TOKEN_LABEL, hashlib.sha256).hexdigest()


def load_tokens(path: str | Path) -> dict[str, str]:
    """token -> name, from a file of ``NAME TOKEN`` lines."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"key 'http_tokens': cannot read {path}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
    tokens: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise TokenFileError(f"{path}:{number}: expected 'NAME TOKEN', got {len(parts)} fields")
        name, token = parts
        if len(token) < MIN_TOKEN_CHARS:
            raise TokenFileError(f"{path}:{number}: the token of {name!r} is shorter than {MIN_TOKEN_CHARS} "
                                 "characters (make one with 'clumon keys token')")
        if token in tokens and tokens[token] != name:
            raise TokenFileError(f"{path}:{number}: the token of {name!r} is also {tokens[token]!r}'s")
        tokens[token] = name
    return tokens


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; False for any other address."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpAuth:
    """Who a request is, by its ``Authorization`` header.

    Without a tokens file every request is let in (``who`` answers ``""``: the
    local caller, whom the op table treats like the query port's loopback
    client). With one, a request is its token's name or nobody (None)."""

    def __init__(self, tokens_file: str | Path | None):
        self.path = Path(tokens_file) if tokens_file else None
        self._tokens: dict[str, str] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        #: requests refused for a missing or wrong token
        self.refused = 0
        if self.path is not None:
            self._reload(force=True)

    @property
    def required(self) -> bool:
        return self.path is not None

    def _reload(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < 1.0:
            return
        self._checked = now
        try:
            st = os.stat(self.path)
        except OSError:
            if force:
                raise TokenFileError(f"key 'http_tokens': cannot read {self.path}: no such file") from None
            self._tokens, self._stamp = {}, None  # the file is gone: nobody is let in
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            self._tokens = load_tokens(self.path)
        except TokenFileError:
            if force:
                raise
            return  # a file being edited: keep what was read last
        self._stamp = stamp

    def who(self, authorization: str | None) -> str | None:
        """The name a request speaks for; None when it must be refused."""
        if self.path is None:
            return ""
        self._reload()
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            for known, name in self._tokens.items():
                if hmac.compare_digest(known.encode(), token.encode()):
                    return name
        self.refused += 1
        return None
