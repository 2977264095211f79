"""The package's shape, checked as CI checks it: import-linter's contracts (pyproject.toml,
[tool.importlinter]) and deptry's view of the declared dependencies."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(tool: str, *args: str, cwd: Path = ROOT, pythonpath: Path | None = None):
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(cwd)}
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [str(BIN / tool), *args], cwd=cwd, capture_output=True, text=True, env=env
    )


def test_the_import_contracts_hold():
    done = run("lint-imports", "--no-cache")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


def test_a_stage_importing_a_later_stage_breaks_the_layers(tmp_path):
    """The same contracts on a copy of the package where the sample stage imports train."""
    shutil.copytree(ROOT / "src" / "sppoflow", tmp_path / "src" / "sppoflow")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    backend = tmp_path / "src" / "sppoflow" / "sample" / "records.py"
    backend.write_text(
        backend.read_text() + "\nfrom sppoflow.train.settings import TrainSettings\n"
    )
    done = run("lint-imports", "--no-cache", cwd=tmp_path, pythonpath=tmp_path / "src")
    assert done.returncode == 1, done.stdout[-3000:]
    assert "the stages in pipeline order, above models, runtime and what they share BROKEN" in (
        done.stdout
    )
    assert "sppoflow.sample.records -> sppoflow.train.settings" in done.stdout


def test_every_import_is_a_declared_dependency_and_every_dependency_is_used():
    done = run("deptry", "src", "scripts")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_no_test_module_imports_another_or_conftest():
    """Tests share helpers through helper modules (tests/helpers.py, ...) and fixtures through
    conftest.py's fixtures, never by importing a test module or conftest itself."""
    import ast

    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            offenders += [
                f"{path.name}: {name}"
                for name in names
                if name.startswith("test_") or name == "conftest"
            ]
    assert not offenders, offenders
