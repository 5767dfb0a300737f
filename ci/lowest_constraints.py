"""Print a pip constraints file that pins every dependency in pyproject.toml to its lower bound.

CI's ``lowest`` job installs with it (``pip install -c``), so the suite runs at the oldest versions the
project declares. Only direct dependencies are pinned (their own dependencies resolve as usual), and an
extra (``torchmetrics[image]``) is pinned by its package name, since a constraint can carry no extras.

    python ci/lowest_constraints.py > lowest.txt && pip install -c lowest.txt -e '.[dev,fid]'
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$")


def lower_bounds(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """``{name: version}`` for every requirement of the project and of its optional extras; a
    requirement with neither ``>=`` nor ``==`` raises, since the lowest job could not pin it."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    pins: dict[str, str] = {}
    for requirement in requirements:
        name, spec = _REQUIREMENT.match(requirement.split(";")[0]).groups()
        bound = re.search(r"(?:>=|==)\s*([^,\s]+)", spec)
        if bound is None:
            raise SystemExit(f"error: {requirement!r} in {pyproject} has no lower bound (>= or ==) to pin")
        pins[name.lower()] = bound.group(1)
    return pins


def main() -> int:
    for name, version in lower_bounds().items():
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
