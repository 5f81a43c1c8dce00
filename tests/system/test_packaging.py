"""The wheel ``make install-system`` installs (a non-editable ``pip install .``) holds every
package of the source tree: a subpackage missing from pyproject's list imports fine from an
editable install and the tests, and only fails on the board."""

from __future__ import annotations

from pathlib import Path

from camheald.config import tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_every_source_package_is_in_pyproject() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = set()
    for top, folder in tool["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            found.add(".".join((top, *rel)))
    assert found - listed == set(), f"packages missing from pyproject.toml: {found - listed}"
    assert listed - found == set(), f"listed but not in the tree: {listed - found}"
