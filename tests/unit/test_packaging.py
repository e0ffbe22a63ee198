"""Every folder of Python modules is a package that a non-editable install ships
(``pip install .``, as .ci/run does): a folder left out of pyproject's list works
in a checkout and fails on a fresh machine."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_module_folder_is_a_listed_package_with_an_init():
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    for package, folder in tool["package-dir"].items():
        for init_dir in sorted({p.parent for p in (REPO / folder).rglob("*.py")}):
            rel = init_dir.relative_to(REPO / folder)
            name = ".".join((package, *rel.parts)) if rel.parts else package
            if "__pycache__" in rel.parts:
                continue
            assert (init_dir / "__init__.py").is_file(), f"{init_dir} has modules but no __init__.py"
            assert name in listed, f"{name} ({init_dir.relative_to(REPO)}) is not in pyproject's packages"
