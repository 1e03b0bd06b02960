"""The prebuilt JupyterLab extension the Python package ships: it is its sources built (rebuilt
with JupyterLab's builder and compared file by file: the build is deterministic), its sources
type-check, it stays small, and a wheel installs it (and enables the server extension) where
Jupyter finds them, without Node.

The Node tools come from package-lock.json (``npm ci``, which ``scripts/run-tests.sh`` runs).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from jupyter_apps import JupyterServer

from telemetry_sinks.jupyter.lab import LAB_PACKAGE, LABEXTENSIONS_DIR, installed_labextension

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "node_modules" / ".bin"
SHIPPED = LABEXTENSIONS_DIR / LAB_PACKAGE
ANSI = re.compile(r"\x1b\[[0-9;]*m")
BUDGET = 32 * 1024  # min+gzip of everything JupyterLab loads for the extension


def run(*argv: str, cwd: Path = REPO, env: dict | None = None, timeout: float = 240) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr


def node() -> str:
    found = shutil.which("node")
    if not found:
        pytest.fail("node is not installed (Node 20 builds the JupyterLab extension)")
    if not (REPO / "node_modules" / "@jupyterlab" / "builder").is_dir():
        pytest.fail("JupyterLab's builder is missing: run `npm ci` at the repository root "
                    "(scripts/run-tests.sh does)")
    return found


def files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file()}


def test_the_shipped_extension_is_its_sources_built(tmp_path):
    out = tmp_path / "built"
    run(node(), "js/labextension/build.mjs", "--outdir", str(out))
    built, shipped = files(out), files(SHIPPED)
    assert sorted(built) == sorted(shipped), (
        f"{SHIPPED} does not match js/labextension and js/src: run `node js/labextension/build.mjs`")
    for name in built:
        assert built[name] == shipped[name], (
            f"{name} differs from a fresh build: run `node js/labextension/build.mjs`")


def test_the_sources_type_check():
    node()
    run(str(BIN / "tsc"), "-p", "js/labextension/tsconfig.json", "--noEmit")


def test_it_is_small_and_takes_jupyterlab_from_jupyterlab():
    scripts = sorted((SHIPPED / "static").glob("*.js"))
    sizes = {p.name: len(gzip.compress(p.read_bytes(), compresslevel=9, mtime=0)) for p in scripts}
    total = sum(sizes.values())
    print(f"JupyterLab extension, min+gzip: {total} bytes in all; {sizes}")
    assert total <= BUDGET, f"the extension is {total} bytes min+gzip; the budget is {BUDGET}"
    meta = json.loads((SHIPPED / "package.json").read_text())
    assert meta["name"] == LAB_PACKAGE and (SHIPPED / meta["jupyterlab"]["_build"]["load"]).is_file()
    # The browser EventLog is bundled once; JupyterLab's own packages are not bundled at all.
    code = b"".join(p.read_bytes() for p in scripts)
    assert code.count(b"/api/telemetry") <= 2 and b"codemirror" not in code.lower()
    licences = json.loads((SHIPPED / "static" / "third-party-licenses.json").read_text())
    assert [p["name"] for p in licences["packages"]] == ["@cfworker/json-schema"]


def test_its_version_is_the_python_packages():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert json.loads((SHIPPED / "package.json").read_text())["version"] == project["version"]
    assert json.loads((REPO / "js/labextension/package.json").read_text())["version"] == project["version"]


def test_this_editable_install_serves_the_package_copy():
    """``pip install -e`` installs no data files: the server extension adds the package's copy
    to JupyterLab's paths (the JupyterLab tests of this directory load it that way)."""
    assert installed_labextension() is None, "a copy is installed in a Jupyter data directory"
    assert (SHIPPED / "package.json").is_file()


def test_a_wheel_installs_the_extension_and_enables_the_server_extension(tmp_path):
    """Installed from the wheel (no Node, no configuration), a Jupyter Server loads the server
    extension and serves the JupyterLab extension to JupyterLab."""
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
        str(REPO))
    (wheel,) = wheels.glob("telemetry_sinks-*.whl")
    # --target, not --prefix: pip would uninstall this environment's own (editable) copy first.
    prefix = site = tmp_path / "target"
    run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(prefix),
        str(wheel))
    installed = prefix / "share/jupyter/labextensions" / LAB_PACKAGE
    assert files(installed) == files(SHIPPED), "the wheel installs the shipped extension"
    server = JupyterServer(tmp_path / "server", "")  # nothing enables the extension but the wheel
    server.env.update(PYTHONPATH=str(site), JUPYTER_PATH=str(prefix / "share" / "jupyter"),
                      JUPYTER_CONFIG_PATH=str(prefix / "etc" / "jupyter"))
    where = run(sys.executable, "-c", "import telemetry_sinks; print(telemetry_sinks.__file__)",
                cwd=tmp_path, env=server.env)
    assert where.strip().startswith(str(site)), "the wheel's copy is the one imported"
    listed = ANSI.sub("", run(sys.executable, "-m", "jupyter", "labextension", "list", cwd=tmp_path,
                              env=server.env))
    assert f"{LAB_PACKAGE} v0.1.0 enabled OK (python, telemetry-sinks)" in listed, listed[-2000:]
    server.start()
    try:
        assert server.api("GET", "/api/telemetry/policy").json()["schemas"] == []  # nothing allowed
        page = server.api("GET", "/lab").text
        data = re.search(r'<script id="jupyter-config-data"[^>]*>(.*?)</script>', page, re.S)
        config = json.loads(data.group(1))
        names = [e["name"] for e in config["federated_extensions"]]
        assert names.count(LAB_PACKAGE) == 1, names
    finally:
        server.stop()
    assert "telemetry_sinks.jupyter | extension was successfully loaded" in server.log_text()
