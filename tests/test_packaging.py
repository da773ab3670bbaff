"""The checkout as a new user meets it: tests run however pytest is started, no build outputs
are committed, and the package metadata builds without deprecation warnings."""

from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import heapalias
from heapalias import native

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


def test_every_package_and_java_folder_is_declared() -> None:
    """A package missing from pyproject.toml is missing from the wheel: `import heapalias`
    failed after `pip install .` while heapalias.collectors was not listed."""
    import tomllib

    declared = set(tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["tool"]["setuptools"]
                   ["packages"])
    folders = {str(path.parent.relative_to(CHECKOUT)).replace("/", ".")
               for pattern in ("__init__.py", "*.java")
               for path in (CHECKOUT / "heapalias").rglob(pattern)}
    assert folders - declared == set()


def test_the_version_is_written_once() -> None:
    # heapalias/_version.py is the one place; pyproject.toml and the CLI read it.
    written = [str(path.relative_to(CHECKOUT)) for path in
               [CHECKOUT / "pyproject.toml", *sorted((CHECKOUT / "heapalias").rglob("*.py"))]
               if re.search(r"^_*version_* = [\"']", path.read_text(), re.M)]
    assert written == ["heapalias/_version.py"]
    proc = subprocess.run([sys.executable, "-m", "heapalias.cli", "--version"], cwd="/",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.split()[-1] == heapalias.__version__, proc.stderr


def _copy_checkout(destination: Path, with_sources: bool) -> Path:
    """The package as imported now (with its built core), and optionally cext/ beside it."""
    shutil.copytree(Path(heapalias.__file__).parent, destination / "heapalias",
                    ignore=shutil.ignore_patterns("__pycache__"))
    if with_sources:
        shutil.copytree(CHECKOUT / "cext", destination / "cext",
                        ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def _import_in_child(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import heapalias"], cwd="/",
                          env={**os.environ, "PYTHONPATH": str(root)},
                          capture_output=True, text=True, timeout=60)


def test_a_core_built_from_other_sources_refuses_to_import(tmp_path: Path) -> None:
    root = _copy_checkout(tmp_path, with_sources=True)
    fresh = _import_in_child(root)
    assert fresh.returncode == 0, fresh.stderr
    edited = next(iter(sorted((root / "cext").glob("*.c"))))
    edited.write_text(edited.read_text() + "/* an edit the build has not seen */\n")
    stale = _import_in_child(root)
    assert stale.returncode == 1
    assert "ImportError: heapalias._native is stale" in stale.stderr
    assert "python setup.py build_ext --inplace" in stale.stderr


def test_an_installed_package_without_sources_is_not_checked(tmp_path: Path) -> None:
    # A wheel ships no cext/: its core was built together with its Python files.
    proc = _import_in_child(_copy_checkout(tmp_path, with_sources=False))
    assert proc.returncode == 0, proc.stderr
    native.require_fresh_build("not this build", tmp_path / "cext")


def test_a_core_built_before_fingerprints_is_stale() -> None:
    with pytest.raises(ImportError, match="built before fingerprints"):
        native.require_fresh_build(None, CHECKOUT / "cext")


def test_the_build_compiles_every_c_file(tmp_path: Path) -> None:
    cext = tmp_path / "cext"
    shutil.copytree(CHECKOUT / "cext", cext, ignore=shutil.ignore_patterns("__pycache__"))
    (cext / "added.c").write_text("int ha_added(void) { return 0; }\n")
    build = runpy.run_path(str(cext / "build_native.py"))
    assert build["SOURCES"] == [f"cext/{path.name}" for path in sorted(cext.glob("*.c"))]
    assert "cext/added.c" in build["SOURCES"]
    # The fingerprint the build compiles in is the one this extension carries.
    assert native.built_fingerprint(native.lib) == build["source_fingerprint"](CHECKOUT / "cext")


def test_the_readme_layout_is_a_true_map() -> None:
    # Every file it names exists, and every C file and public module is named.
    layout = (CHECKOUT / "README.md").read_text().split("\nLayout:\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([\w/.]+\.(?:py|c|h|java))`", layout))
    present = [f"/{path.relative_to(CHECKOUT).as_posix()}" for path in CHECKOUT.rglob("*")]
    assert {name for name in named if not any(p.endswith(f"/{name}") for p in present)} == set()
    sources = [*(CHECKOUT / "cext").glob("*.[ch]"), *(CHECKOUT / "heapalias").rglob("*.py")]
    unnamed = {path.name for path in sources if not path.name.startswith("_")} - {
        name.rsplit("/", 1)[-1] for name in named}
    assert unnamed == set()
