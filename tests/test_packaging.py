"""Packaging: one version, declared dependencies, the metadata an install carries, and the
floor check that `make test-lowest` runs (tests/floors.py). All fast: no install here;
`make test-install` and `make test-lowest` do those."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import floors
import pytest

import embinspect

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@functools.cache
def _imported_top_level_names() -> dict[str, list[str]]:
    """Every absolute import in embinspect/ (at any depth, in any function): top-level
    module name -> the files importing it, the standard library and embinspect left out."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "embinspect").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "embinspect":
                    found.setdefault(top, []).append(path.relative_to(ROOT).as_posix())
    return found


@functools.cache
def _installed_by() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()  # reads every installed RECORD: once


def _distribution(module: str) -> str:
    """The distribution (normalized) that installs an importable top-level module."""
    names = _installed_by().get(module, [module])
    assert len(set(map(floors.normalized, names))) == 1, (module, names)
    return floors.normalized(names[0])


def test_every_runtime_import_is_a_declared_dependency():
    declared = floors.declared(PYPROJECT)
    imported = {_distribution(m): files for m, files in _imported_top_level_names().items()}
    assert {d: f for d, f in imported.items() if d not in declared} == {}


def test_every_declared_dependency_is_imported():
    imported = {_distribution(m) for m in _imported_top_level_names()}
    assert sorted(set(floors.declared(PYPROJECT)) - imported) == []


def test_the_plot_extra_is_the_only_extra_and_dev_tools_are_a_group():
    assert list(PYPROJECT["project"]["optional-dependencies"]) == ["plot"]
    assert "pytest>=8" in PYPROJECT["dependency-groups"]["dev"]


def test_version_is_written_once_and_read_from_the_installed_metadata():
    assert "__version__ =" not in (ROOT / "embinspect" / "__init__.py").read_text()
    version = PYPROJECT["project"]["version"]
    assert importlib.metadata.version("embinspect") == version
    assert embinspect.__version__ == version


def test_version_option_prints_the_metadata_version(cli):
    run = cli("--version")
    assert (run.returncode, run.stdout, run.stderr) == (
        0,
        f"embinspect {PYPROJECT['project']['version']}\n",
        "",
    )


def test_import_embinspect_does_not_read_the_metadata():
    """``importlib.metadata`` costs ~30 ms: read only when the version is asked for."""
    probe = (
        "import sys; before = 'importlib.metadata' in sys.modules; import embinspect; "
        "print(before, 'importlib.metadata' in sys.modules, end=' '); "
        "embinspect.__version__; print('importlib.metadata' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert (done.returncode, done.stdout, done.stderr) == (0, "False False True\n", "")


def test_installed_metadata_carries_the_license_python_and_extras():
    meta = importlib.metadata.metadata("embinspect")
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    # Only the tested Python (the metadata may write the clauses in another order).
    assert PYPROJECT["project"]["requires-python"] == ">=3.11,<3.12"
    assert set(meta["Requires-Python"].split(",")) == {">=3.11", "<3.12"}
    assert meta.get_all("Provides-Extra") == ["plot"]
    requires = meta.get_all("Requires-Dist")
    assert [r for r in requires if "extra ==" not in r] == PYPROJECT["project"]["dependencies"]
    assert not any("pytest" in r for r in requires)  # the dev group is never a user's


def test_license_file_is_the_apache_license_and_the_build_backend_reads_pep_639():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text
    assert PYPROJECT["build-system"]["requires"] == ["setuptools>=77"]


def test_py_typed_is_shipped():
    assert (ROOT / "embinspect" / "py.typed").is_file()
    assert PYPROJECT["tool"]["setuptools"]["package-data"]["embinspect"] == ["py.typed"]


# --- tests/floors.py --------------------------------------------------------------------

TINY = {
    "project": {
        "dependencies": ["typer>=0.26", "huggingface_hub>=2.0", "torch>=2.1"],
        "optional-dependencies": {"plot": ["matplotlib>=3.7"]},
    }
}
LOWEST = """\
huggingface-hub==2.0.0
    # via -r pyproject.toml
matplotlib==3.7.0
typer==0.26.0
"""


def test_floors_declared_reads_every_dependency_and_extra():
    assert floors.declared(TINY) == {
        "typer": "0.26",
        "huggingface-hub": "2.0",
        "torch": "2.1",
        "matplotlib": "3.7",
    }


@pytest.mark.parametrize(
    "requirement",
    ["typer", "typer>0.26", "typer>=0.26,<1", "typer>=0.26; python_version < '3.12'"],
    ids=["no-floor", "strict", "capped", "marker"],
)
def test_floors_declared_refuses_what_it_cannot_check(requirement):
    with pytest.raises(ValueError, match=re.escape(repr(requirement))):
        floors.declared({"project": {"dependencies": [requirement]}})


def test_floors_declared_refuses_two_floors_for_one_package():
    project = {"project": {"dependencies": ["numpy>=1.24"], "optional-dependencies": {}}}
    project["project"]["optional-dependencies"]["x"] = ["NumPy>=1.26"]
    with pytest.raises(ValueError, match="two floors, 1.24 and 1.26"):
        floors.declared(project)


def test_floors_pinned_reads_name_version_lines_only():
    assert floors.pinned(LOWEST) == {
        "huggingface-hub": "2.0.0",
        "matplotlib": "3.7.0",
        "typer": "0.26.0",
    }


def test_floors_every_floor_in_the_lowest_set_passes_and_torch_is_left_out():
    assert floors.untested_floors(floors.declared(TINY), floors.pinned(LOWEST)) == []


def test_floors_a_floor_the_resolver_lifted_or_dropped_is_named():
    pins = floors.pinned(LOWEST.replace("typer==0.26.0", "typer==0.29.2"))
    del pins["matplotlib"]
    assert floors.untested_floors(floors.declared(TINY), pins) == [
        "matplotlib: declared >=3.7, not in the lowest set",
        "typer: declared >=0.26, but the lowest set has 0.29.2",
    ]


def test_floors_of_this_project_are_all_checkable():
    assert set(floors.declared(PYPROJECT)) >= {"torch", "transformers", "tokenizers", "httpx2"}


def test_floors_script_exits_1_naming_an_untested_floor(tmp_path, capsys):
    lowest = tmp_path / "lowest.txt"
    pins = {n: v for n, v in floors.declared(PYPROJECT).items() if n != "torch"}
    lowest.write_text("".join(f"{n}=={v}\n" for n, v in {**pins, "transformers": "99.0"}.items()))
    assert floors.main([str(lowest)]) == 1
    floor = pins["transformers"]
    assert capsys.readouterr().err == (
        f"floors: transformers: declared >={floor}, but the lowest set has 99.0\n"
    )
    lowest.write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
    assert floors.main([str(lowest)]) == 0
    assert capsys.readouterr().out.startswith("floors: every floor is in the lowest set (")
