"""Key files for tests of a secured tree (CurveZMQ): one pair per name, written
as ``clumon keys gen`` writes them, and an ``authorized_keys`` directory per
parent."""

from __future__ import annotations

import shutil
from pathlib import Path

from clumon.proto.curve import generate


class Keys:
    def __init__(self, tmp: Path):
        self.dir = tmp / "keys"
        self.dir.mkdir(parents=True, exist_ok=True)

    def gen(self, *names: str) -> None:
        for n in names:
            if not self.public(n).exists():
                generate(n, self.dir)

    def public(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def secret(self, name: str) -> Path:
        return self.dir / f"{name}.key_secret"

    def authorized(self, parent: str, *names: str) -> Path:
        """``parent``'s authorized_keys directory, holding the public keys of ``names``."""
        d = self.dir.parent / f"authorized-{parent}"
        d.mkdir(exist_ok=True)
        for n in names:
            self.gen(n)
            shutil.copy(self.public(n), d / f"{n}.key")
        return d

    def curve(self, name: str, parent: str | None = None, authorized: Path | None = None) -> dict:
        """A daemon's ``[curve]`` table."""
        self.gen(name)
        out = {"secret_key": str(self.secret(name))}
        if parent:
            self.gen(parent)
            out["parent_key"] = str(self.public(parent))
        if authorized is not None:
            out["authorized_keys"] = str(authorized)
        return out
