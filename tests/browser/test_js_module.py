"""The browser module's sources: type-checked, unit-tested with Node's test runner, rebuilt and
compared byte for byte with the file the Python package ships, and measured.

The Node tools come from package-lock.json (``npm ci``, which ``scripts/run-tests.sh`` runs).
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from telemetry_sinks.server.browser import MODULE, STATIC_DIR

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "node_modules" / ".bin"
CORE_LIMIT = 10 * 1024  # min+gzip, without the validator
TOTAL_LIMIT = 30 * 1024  # min+gzip, everything the page loads


def node() -> str:
    found = shutil.which("node")
    if not found:
        pytest.fail("node is not installed (Node 20 is needed to build and test the browser module)")
    if not (BIN / "esbuild").exists():
        pytest.fail("the Node build tools are missing: run `npm ci` at the repository root "
                    "(scripts/run-tests.sh does)")
    return found


def run(*argv: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built")
    run(node(), "js/build.mjs", "--outdir", str(out))
    return out


def min_gzip(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0))


def test_the_shipped_files_are_the_sources_built(built):
    for name in (MODULE, "demo.js"):
        assert (built / name).read_bytes() == (STATIC_DIR / name).read_bytes(), (
            f"telemetry_sinks/server/static/{name} does not match js/src: run `node js/build.mjs`")


def test_the_sources_type_check():
    node()
    run(str(BIN / "tsc"), "-p", "js/tsconfig.json", "--noEmit")


def test_node_unit_tests(built):
    done = run(node(), "--test", *sorted(str(p) for p in (REPO / "js" / "test").glob("*.test.mjs")),
               env={"TELEMETRY_SINKS_MODULE": str(built / MODULE)})
    assert "# fail 0" in done.stdout and "# pass " in done.stdout, done.stdout[-2000:]


def test_bundle_sizes(built, tmp_path):
    core = tmp_path / "core.js"
    run(node(), "js/build.mjs", "--core", str(core))
    core_size = min_gzip(core)
    total = min_gzip(built / MODULE)
    print(f"browser module, min+gzip: core {core_size} bytes, with the validator {total} bytes")
    assert core_size <= CORE_LIMIT, f"the core is {core_size} bytes min+gzip; the budget is {CORE_LIMIT}"
    assert total <= TOTAL_LIMIT, f"the module is {total} bytes min+gzip; the budget is {TOTAL_LIMIT}"
    assert b"eval(" not in (built / MODULE).read_bytes() and b"Function(" not in (built / MODULE).read_bytes()
