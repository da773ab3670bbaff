"""The checkout as a new user meets it: tests run however pytest is started, no build outputs
are committed, and the package metadata builds without deprecation warnings."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import heapalias

CHECKOUT = Path(__file__).resolve().parent.parent


def test_python_dash_m_pytest_imports_a_built_heapalias() -> None:
    # After `pip install .` the checkout has no C core; the root conftest must then
    # make `python -m pytest` import the installed package instead of the source tree.
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_errors.py"],
        cwd=CHECKOUT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed" in proc.stdout


@pytest.mark.skipif(not (CHECKOUT / ".git").exists() or shutil.which("git") is None,
                    reason="not a git checkout: nothing to inspect for committed build outputs")
def test_no_build_outputs_are_committed() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=CHECKOUT, capture_output=True, text=True,
                             check=True).stdout.split()
    built = [name for name in tracked if name.endswith((".o", ".so", ".pyc"))]
    assert built == []


def test_wheel_builds_without_packaging_warnings(tmp_path: Path) -> None:
    # setuptools stops accepting a license table on 2027-02-18, and data directories
    # that are not declared packages draw a "would be ignored" warning. The copy has no
    # compiled core, so reading the version must not import heapalias.
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("*.so", "*.o", "__pycache__", "build", "*.egg-info")
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(CHECKOUT / name, source / name)
    for folder in ("cext", "heapalias"):
        shutil.copytree(CHECKOUT / folder, source / folder, ignore=ignore)
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-c",
         "import sys; from setuptools import build_meta as b; print(b.build_wheel(sys.argv[1]))",
         str(tmp_path / "dist")],
        cwd=source, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1].startswith(f"heapalias-{heapalias.__version__}-")
    noise = [line for line in (proc.stdout + proc.stderr).splitlines()
             if re.search(r"deprecat|would be ignored|as data is", line, re.I)]
    assert noise == []


def test_the_version_is_written_once() -> None:
    # heapalias/_version.py is the one place; pyproject.toml and the CLI read it.
    written = [str(path.relative_to(CHECKOUT)) for path in
               [CHECKOUT / "pyproject.toml", *sorted((CHECKOUT / "heapalias").rglob("*.py"))]
               if re.search(r"^_*version_* = [\"']", path.read_text(), re.M)]
    assert written == ["heapalias/_version.py"]
    proc = subprocess.run([sys.executable, "-m", "heapalias.cli", "--version"], cwd="/",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.split()[-1] == heapalias.__version__, proc.stderr
