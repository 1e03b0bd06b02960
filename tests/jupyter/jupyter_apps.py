"""Real Jupyter applications for the tests: Jupyter Server, JupyterHub and a collector for their events.

Each runs as a subprocess of the test on free 127.0.0.1 ports, with its own
JUPYTER_CONFIG_DIR / JUPYTER_DATA_DIR / JUPYTER_RUNTIME_DIR, and is driven through
its REST API.  The installed extensions of the environment (jupyterlab,
jupyter_server_terminals, notebook_shim, ...) load as they do for users.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import requests
from helpers.servers import free_port, port_is_free

from telemetry_sinks.jupyter import export_jupyter_schemas

REPO = Path(__file__).resolve().parents[2]
PROXY = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
START_TIMEOUT = 120.0  # a 2-core machine shared by several test runs


def jupyter_env(directory: Path) -> dict[str, str]:
    """The environment of a Jupyter process whose config, data and runtime dirs are in ``directory``."""
    env = dict(os.environ)
    for name in ("config", "data", "runtime"):
        (directory / name).mkdir(parents=True, exist_ok=True)
    env.update(
        JUPYTER_CONFIG_DIR=str(directory / "config"),
        JUPYTER_DATA_DIR=str(directory / "data"),
        JUPYTER_RUNTIME_DIR=str(directory / "runtime"),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("JUPYTERHUB_API_TOKEN", None)
    return env


class AppProcess:
    """A subprocess with its log in a file, stopped by signal and waited for."""

    def __init__(self, name: str, argv: list[str], directory: Path, env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.directory = directory
        self.env = env
        self.log_path = directory / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def launch(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.directory,
            start_new_session=True,
        )
        log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(
        self, url: str, headers: dict | None = None, timeout: float = START_TIMEOUT, status: int | None = None
    ) -> None:
        """Wait until ``url`` answers (``status``, or any status below 500)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n"
                                   f"{self.log_text()[-4000:]}")
            try:
                answer = requests.get(url, headers=headers, timeout=5).status_code
                if answer == status or (status is None and answer < 500):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout} s:\n{self.log_text()[-4000:]}")

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, as a process manager stops it; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        """Kill what is left of the process group (a spawned server, the proxy)."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if process.poll() is None:
            process.wait(10)


def read_jsonl(path: Path) -> list[dict]:
    """Lines of a rotating JSONL file and its backups, oldest first."""
    backups = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]))
    lines = []
    for file in [*[p for p in backups if p.suffix[1:].isdigit()], path]:
        if file.exists():
            lines.extend(json.loads(x) for x in file.read_text().splitlines() if x.strip())
    return lines


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s (last: {value!r})")
        time.sleep(interval)


# --------------------------------------------------------------------------- collector


class JupyterCollector(AppProcess):
    """``telemetry-sinks serve`` recording Jupyter's events (and ``extra``) to ``events.jsonl``."""

    def __init__(self, directory: Path, allowed: dict, extra_config: str = "", hub_service: bool = False,
                 port: int | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.events_file = directory / "events.jsonl"
        schemas = export_jupyter_schemas(directory / "jupyter-schemas")
        self.config_file = directory / "collector_config.py"
        self.config_file.write_text(
            f"c.EventLog.schema_paths = [{schemas!r}]\n"
            f"c.EventLog.allowed_schemas = {allowed!r}\n"
            "c.EventLog.sinks = ['rotating_file']\n"
            f"c.RotatingFileSink.filename = {str(self.events_file)!r}\n"
            + textwrap.dedent(extra_config)
        )
        argv = [sys.executable, "-m", "telemetry_sinks", "serve", "--config", str(self.config_file)]
        if hub_service:
            argv.append("--hub-service")
        else:
            argv += ["--port", str(self.port)]
        super().__init__("collector", argv, directory, dict(os.environ))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/events"

    def start(self) -> JupyterCollector:
        self.launch()
        self.wait_ready(f"http://127.0.0.1:{self.port}/api/health")
        return self

    def received(self) -> list[dict]:
        return read_jsonl(self.events_file)


# --------------------------------------------------------------------------- Jupyter Server


class JupyterServer(AppProcess):
    """``jupyter server`` with ``config`` appended to a jupyter_server_config.py of test basics."""

    def __init__(self, directory: Path, config: str, name: str = "jupyter-server") -> None:
        self.port = free_port()
        self.token = "test-token-" + os.urandom(8).hex()
        self.root = directory / "root"
        self.root.mkdir(parents=True, exist_ok=True)
        env = jupyter_env(directory)
        basics = f"""
            c.ServerApp.port = {self.port}
            c.ServerApp.ip = "127.0.0.1"
            c.ServerApp.open_browser = False
            c.ServerApp.allow_root = True
            c.IdentityProvider.token = {self.token!r}
            c.ServerApp.root_dir = {str(self.root)!r}
            c.ServerApp.port_retries = 0
        """
        (directory / "config" / "jupyter_server_config.py").write_text(
            textwrap.dedent(basics) + textwrap.dedent(config)
        )
        argv = [sys.executable, "-m", "jupyter_server"]
        super().__init__(name, argv, directory, env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def start(self) -> JupyterServer:
        for _ in range(50):
            if port_is_free(self.port):
                break
            time.sleep(0.1)
        self.launch()
        self.wait_ready(self.url + "/api/status", self.headers)
        return self

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, self.url + path, headers=self.headers, timeout=60, **kwargs)


# --------------------------------------------------------------------------- JupyterHub


def require_proxy() -> str:
    if not PROXY.exists():
        raise RuntimeError(
            f"configurable-http-proxy is missing ({PROXY}): run `npm ci` in {REPO} "
            "(scripts/run-tests.sh does) to install the Node packages of package-lock.json"
        )
    return str(PROXY)


class JupyterHub(AppProcess):
    """``jupyterhub`` (DummyAuthenticator, SimpleLocalProcessSpawner, configurable-http-proxy)."""

    def __init__(self, directory: Path, config: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.service_port = free_port()
        self.admin_token = "admin-token-" + os.urandom(12).hex()
        self.password = "dummy-password"
        basics = f"""
            import sys
            c.JupyterHub.ip = "127.0.0.1"
            c.JupyterHub.port = {self.port}
            c.JupyterHub.hub_ip = "127.0.0.1"
            c.JupyterHub.hub_port = {self.hub_port}
            c.ConfigurableHTTPProxy.command = [{require_proxy()!r}]
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
            c.ConfigurableHTTPProxy.pid_file = {str(directory / "proxy.pid")!r}
            c.JupyterHub.db_url = "sqlite:///{directory / 'hub.sqlite'}"
            c.JupyterHub.cookie_secret_file = {str(directory / "cookie_secret")!r}
            c.JupyterHub.pid_file = {str(directory / "hub.pid")!r}
            c.JupyterHub.authenticator_class = "dummy"
            c.DummyAuthenticator.password = {self.password!r}
            c.Authenticator.allow_all = True
            c.JupyterHub.spawner_class = "simple"
            c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
            c.Spawner.args = ["--allow-root"]
            c.Spawner.start_timeout = 120
            c.Spawner.http_timeout = 120
            c.JupyterHub.cleanup_servers = True
            c.JupyterHub.load_roles = [
                {{"name": "test-admin", "scopes": ["admin:users", "admin:servers", "access:servers",
                  "tokens", "admin:auth_state"], "services": ["test-admin"]}},
            ]
            c.JupyterHub.services = [{{"name": "test-admin", "api_token": {self.admin_token!r}}}]
        """
        self.config_file = directory / "jupyterhub_config.py"
        self.config_file.write_text(textwrap.dedent(basics) + textwrap.dedent(config))
        argv = [sys.executable, "-m", "jupyterhub", "-f", str(self.config_file)]
        env = jupyter_env(directory)
        super().__init__("jupyterhub", argv, directory, env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> JupyterHub:
        self.launch()
        self.wait_ready(self.url + "/hub/api/", status=200)  # the proxy answers 404 until the Hub is up
        return self

    def stop(self) -> None:
        """Stop the Hub, then the proxy if the Hub could not (it runs in its own session)."""
        super().stop()
        pid_file = self.directory / "proxy.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        pid_file.unlink(missing_ok=True)

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {self.admin_token}", **kwargs.pop("headers", {})}
        return requests.request(method, self.url + "/hub/api" + path, headers=headers, timeout=60, **kwargs)

    def start_server(self, user: str, timeout: float = START_TIMEOUT) -> dict:
        """Create ``user``, start their server through the Hub's API, wait until it runs."""
        self.api("POST", f"/users/{user}")
        answer = self.api("POST", f"/users/{user}/server")
        assert answer.status_code in (201, 202), answer.text
        return wait_for(lambda: self._ready(user), timeout, 0.5, f"{user}'s server running")

    def _ready(self, user: str) -> dict | None:
        model = self.api("GET", f"/users/{user}", params={"include_stopped_servers": "0"}).json()
        server = model.get("servers", {}).get("")
        return model if server and server.get("ready") else None

    def stop_server(self, user: str, timeout: float = 60.0) -> None:
        answer = self.api("DELETE", f"/users/{user}/server")
        assert answer.status_code in (202, 204), answer.text
        wait_for(lambda: not self.api("GET", f"/users/{user}").json().get("servers"), timeout, 0.5,
                 f"{user}'s server stopped")
