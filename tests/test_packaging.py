"""environment.yaml installs what pyproject.toml requires, and the CI runs the README's test command."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yaml_names_the_same_requirements_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    environment = yaml.safe_load((ROOT / "environment.yaml").read_text())
    assert environment["name"] == "ldm"
    assert "python=3.11" in environment["dependencies"]
    (pip_section,) = [entry for entry in environment["dependencies"] if isinstance(entry, dict)]
    listed = set(pip_section["pip"]) - {"-e .[dev]"}
    assert listed == required
    assert "-e .[dev]" in pip_section["pip"]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^\s*(make \w+)\s*$", readme, flags=re.M)
    assert "make test" in commands and "make demo" in commands
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == ["make test"]
