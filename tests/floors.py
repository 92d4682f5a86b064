"""The floors of embinspect's dependencies, held against the set `make test-lowest` tests.

``python tests/floors.py LOWEST.txt`` reads pyproject.toml's ``dependencies`` and every
extra's, and LOWEST.txt, the set ``uv pip compile --resolution lowest-direct`` computed
(``name==version`` lines). It exits 0 when each declared floor is exactly the version in
the set, so that the versions the tests ran with are the ones pyproject.toml promises, and
otherwise prints one line for each floor that is not and exits 1. A floor the resolver had
to lift (a newer transformers, because older ones refuse huggingface_hub 2) is a floor that
was never tested: raise it to the version named.

torch is left out (``UNTESTED``): the test machines have only the CPU build 2.13.0, so its
floor is documented, not tested. The dev group's tools are not floors: they are installed
at whatever versions go with the lowest set.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Declared with a floor that no test machine can install (see the module's docstring).
UNTESTED = frozenset({"torch"})

_FLOOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*>=\s*([^\s,;]+)\s*$")
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them (``huggingface_hub`` is ``huggingface-hub``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(pyproject: dict) -> dict[str, str]:
    """Each runtime dependency (and extra) of the project: normalized name -> its floor.

    Raises ValueError for a requirement that is not a plain ``name>=floor``: one without a
    floor (or with a cap or marker) cannot be checked this way.
    """
    project = pyproject["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    floors: dict[str, str] = {}
    for requirement in requirements:
        match = _FLOOR.match(requirement)
        if match is None:
            raise ValueError(f"{requirement!r}: not a plain name>=floor requirement")
        name, floor = normalized(match[1]), match[3]
        if floors.get(name, floor) != floor:
            raise ValueError(f"{match[1]}: two floors, {floors[name]} and {floor}")
        floors[name] = floor
    return floors


def pinned(text: str) -> dict[str, str]:
    """The ``name==version`` lines of a compiled requirements file: normalized name -> version."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        match = _PIN.match(line)
        if match:
            pins[normalized(match[1])] = match[2]
    return pins


def _release(version: str) -> tuple[int, ...] | str:
    """``5.18`` and ``5.18.0`` alike; a version that is not plain numbers is compared as text."""
    if not re.fullmatch(r"\d+(\.\d+)*", version):
        return version
    parts = [int(p) for p in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def untested_floors(floors: dict[str, str], pins: dict[str, str]) -> list[str]:
    """One line for each floor (outside ``UNTESTED``) that the lowest set does not hold."""
    problems = []
    for name, floor in sorted(floors.items()):
        if name in UNTESTED:
            continue
        got = pins.get(name)
        if got is None:
            problems.append(f"{name}: declared >={floor}, not in the lowest set")
        elif _release(got) != _release(floor):
            problems.append(f"{name}: declared >={floor}, but the lowest set has {got}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/floors.py LOWEST.txt", file=sys.stderr)
        return 2
    floors = declared(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8")))
    pins = pinned(Path(argv[0]).read_text(encoding="utf-8"))
    problems = untested_floors(floors, pins)
    for problem in problems:
        print(f"floors: {problem}", file=sys.stderr)
    if problems:
        return 1
    tested = ", ".join(f"{n}=={pins[n]}" for n in sorted(floors) if n not in UNTESTED)
    print(f"floors: every floor is in the lowest set ({tested}); untested: {', '.join(UNTESTED)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
