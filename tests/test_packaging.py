"""The install metadata is consistent: pyproject.toml and environment.yml name the same requirements."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _normalise(req: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    assert match, req
    return match.group(1).lower().replace("_", "-"), match.group(2).replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + [r for extra in meta["optional-dependencies"].values() for r in extra]
    return dict(_normalise(r) for r in reqs)


def environment_requirements() -> dict[str, str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    reqs = []
    for line in lines[start + 1 :]:
        item = line.strip()
        if not item.startswith("- "):
            break
        item = item[2:]
        if not item.startswith("-e"):
            reqs.append(item)
    return dict(_normalise(r) for r in reqs)


def test_environment_yml_matches_pyproject():
    assert environment_requirements() == pyproject_requirements()


def test_lower_bounds_not_pins():
    for name, spec in pyproject_requirements().items():
        assert not spec.startswith("=="), f"{name} is pinned ({spec}); use a lower bound"


def test_console_script_target_exists():
    from mlcak_lib import course

    assert callable(course.main)
