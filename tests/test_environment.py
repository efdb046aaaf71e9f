"""The conda spec and pyproject.toml pin the same packages at the same versions."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _normalise(requirement: str) -> tuple[str, str]:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+(?:\[[^\]]+\])?)\s*==\s*([^\s;]+)\s*", requirement)
    assert match, f"not an exact pin: {requirement!r}"
    return match.group(1).lower(), match.group(2)


def test_environment_yml_matches_pyproject_pins():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    pinned = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    expected = dict(_normalise(r) for r in pinned)

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    got = dict(_normalise(r) for r in pip_section)
    assert got == expected
    conda_names = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda_names and "ffmpeg" in conda_names


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme
    assert ci.strip().splitlines()[-1] == "make test"
