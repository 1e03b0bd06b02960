"""``telemetry-sinks serve --processes N``: N collector processes on one port, started and watched.

The collector validates events in Python, so one process uses one core.  With
``--processes N`` the command forks N collector processes that listen on the
same port, each on a socket of its own (``SO_REUSEPORT``): the kernel spreads new
connections over them, so that keep-alive clients (HTTP sinks, load balancers'
connection pools) land on every process.  The supervisor only holds the port
(bound, not listening, so it takes no connection; it resolves ``--port 0``) and
watches the processes.  Where ``SO_REUSEPORT`` is missing, the processes share
one listening socket instead (each connection goes to whichever accepts first,
which can leave long-lived connections on one process).  Connections waiting in
the backlog of a process that is killed are reset (clients retry: the HTTP sink
does, with the same event ids).  The processes share nothing at run time:

* each process builds its own EventLog after the fork: its own sink workers and
  connections, and its own copy of the configuration;
* files and directories that only one process may write get a sub-directory
  ``process-<i>`` (1 to N) of the configured one: every network sink's
  ``spool_dir``, the rotating file sinks' ``filename``, the archive sink's
  ``directory`` (each sink class lists them in ``per_process_options``).  A
  process started again, after a crash or by a restart of the command, replays
  the spool of its own index.  Sink instances built inside the config file
  (``c.EventLog.handlers = [...]``) keep their paths: spools are safe to share
  between processes of one application, plain files too (one ``write(2)`` per line);
* the dedup window (``c.Collector.dedup_window``) is per process: a client's retry
  on a new connection reaches another process in about (N-1)/N of the cases and
  is then recorded again, with the same ``__event_id__``, for the stores
  downstream to drop (the archive, Elasticsearch / OpenSearch ``create`` by id);
  so is the per-client rate limit (``c.Collector.client_rate_limit``): a client
  spread over N processes may make up to N times as many requests;
* SIGTERM or SIGINT to the supervisor stops every process gracefully (each stops
  accepting, flushes and closes its sinks) and the command exits when all have;
  a process that dies otherwise (kill -9, a crash) is started again; a process
  that exits with a configuration error stops them all (exit code 2);
* a process whose supervisor disappeared stops by itself.
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from tornado.netutil import bind_sockets
from traitlets.config import Config

_log = logging.getLogger("telemetry_sinks.server")

EXIT_USAGE = 2
#: Seconds between the death of a process and its restart (a crash loop stays slow).
RESTART_DELAY = 1.0
#: How long the supervisor waits for its processes after SIGTERM before it kills them.
STOP_TIMEOUT = 60.0
#: Each process listens on a socket of its own (the kernel balances connections over them).
REUSE_PORT = hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def per_process_config(config: Config, index: int) -> Config:
    """``config`` with each single-writer path of the EventLog's sinks moved to ``process-<index>``.

    For each sink named in ``c.EventLog.sinks``, each option its class lists in
    ``per_process_options`` is read as traitlets would (the class's own section, else
    the nearest base class's: ``c.NetworkSink.spool_dir`` applies to every network
    sink) and written, moved, to the class's own section; other sinks reading the
    same base section keep their value.
    """
    from ..registry import sink_class
    from ..sinks.base import Sink

    result = copy.deepcopy(config)
    part = f"process-{index}"
    for name in config.get("EventLog", {}).get("sinks", []):
        try:
            cls = sink_class(name)
        except Exception:
            continue  # the EventLog reports it with its own precise error
        sections = [c.__name__ for c in cls.__mro__ if isinstance(c, type) and issubclass(c, Sink)]
        for option, kind in getattr(cls, "per_process_options", {}).items():
            value = next((config[s][option] for s in sections if s in config and option in config[s]), None)
            if not isinstance(value, str) or not value:
                continue
            if kind == "directory":
                moved = os.path.join(value, part)
            else:
                head, tail = os.path.split(value)
                moved = os.path.join(head, part, tail)
            result[cls.__name__][option] = moved
    return result


class Supervisor:
    """Forks and watches the collector processes (see the module documentation)."""

    def __init__(self, config: Config, processes: int,
                 on_ready: Callable[[Any, int, int], None] | None = None) -> None:  # fmt: skip
        self.config = config
        self.processes = processes
        self.on_ready = on_ready
        self.children: dict[int, int] = {}  # pid -> index
        self.port: int | None = None
        self._stopping = False
        self._exit_code = 0

    def run(self) -> int:
        """Bind, fork, supervise until SIGTERM/SIGINT; return the exit code."""
        from .app import Collector

        collector = self.config.get("Collector", {})
        traits = Collector.class_traits()
        self.ip = collector.get("ip", traits["ip"].default())
        port = collector.get("port", traits["port"].default())
        if collector.get("hub_service", False):
            from .hub import service_address  # and its cookie secret, shared by the forked processes

            address = service_address()  # where the Hub expects the service, as Collector does
            if address is not None:
                self.ip, port = collector.get("ip", address[0]), collector.get("port", address[1])
        try:
            if REUSE_PORT:
                sockets = [_reserve(self.ip, port)]
            else:
                sockets = bind_sockets(port, address=self.ip or None)
        except OSError as exc:
            where = f"{self.ip or '*'}:{port}"
            raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror}; choose another port "
                          "(--port, c.Collector.port; 0 picks a free one)") from None  # fmt: skip
        self.port = sockets[0].getsockname()[1]
        self.sockets = sockets
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(1, self.processes + 1):
                self._spawn(index)
            self._supervise()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for sock in sockets:
                sock.close()
        return self._exit_code

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self._stopping:
            _log.info("stopping %d collector processes", len(self.children))
        self._stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _spawn(self, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child never returns from here
            code = 1
            try:
                code = self._child(index, parent)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException as exc:
                code = EXIT_USAGE if _is_config_error(exc) else 1
                if code == EXIT_USAGE:
                    print(f"telemetry-sinks: error: {exc}", file=sys.stderr)
                else:
                    traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = index

    def _child(self, index: int, parent: int) -> int:
        from .app import Collector

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        _watch_parent(parent)
        collector = Collector(config=per_process_config(self.config, index))

        def ready(port: int) -> None:
            if self.on_ready is not None:
                self.on_ready(collector, index, self.processes)

        if REUSE_PORT:  # a listening socket of this process's own, in the port's group
            for sock in self.sockets:
                sock.close()
            assert self.port is not None  # bound in run()
            sockets = bind_sockets(self.port, address=self.ip or None, reuse_port=True)
        else:
            sockets = self.sockets
        collector.run(on_ready=ready, sockets=sockets)
        return 0

    def _supervise(self) -> None:
        deadline: float | None = None
        while self.children:
            if self._stopping and deadline is None:
                deadline = time.monotonic() + STOP_TIMEOUT
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if deadline is not None and time.monotonic() > deadline:
                    _log.warning("collector processes still running after %.0f s; killing them", STOP_TIMEOUT)
                    for child in list(self.children):
                        os.kill(child, signal.SIGKILL)
                    deadline = float("inf")
                time.sleep(0.05)
                continue
            index = self.children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if self._stopping:
                if code not in (0, -signal.SIGTERM):
                    self._exit_code = self._exit_code or 1
                continue
            if code == EXIT_USAGE:
                _log.error("collector process %d exited with a configuration error; stopping", index)
                self._exit_code = EXIT_USAGE
                self._on_signal(signal.SIGTERM, None)
                continue
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            _log.warning("collector process %d (pid %d) ended (%s); starting it again", index, pid, how)
            time.sleep(RESTART_DELAY)
            if not self._stopping:
                self._spawn(index)


def _reserve(ip: str, port: int) -> socket.socket:
    """A socket bound to ``ip:port`` with SO_REUSEPORT, not listening: it holds the port for the
    processes' listening sockets and receives no connection itself."""
    family, kind, proto, _, address = socket.getaddrinfo(
        ip or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _watch_parent(parent: int) -> None:
    """Stop this process gracefully when its supervisor is gone (its parent changes)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="telemetry-sinks-supervisor-watch", daemon=True).start()


def _is_config_error(exc: BaseException) -> bool:
    from ..errors import MissingExtraError, SchemaError, SinkConfigError, UnknownSinkError

    return isinstance(exc, (SinkConfigError, UnknownSinkError, MissingExtraError, SchemaError)) or (
        type(exc).__name__ == "TraitError"
    )


def serve_processes(config: Config, processes: int,
                    on_ready: Callable[[Any, int, int], None] | None = None) -> int:  # fmt: skip
    """Serve ``config``'s collector from ``processes`` processes; return the exit code."""
    return Supervisor(config, processes, on_ready).run()


__all__ = ["Supervisor", "per_process_config", "serve_processes"]
