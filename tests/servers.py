"""Throwaway database servers for the test session (and the insert-method benchmark).

:func:`start_postgres` runs ``initdb`` + ``postgres`` and :func:`start_mariadb` runs
``mariadb-install-db`` + ``mariadbd`` in a temporary folder on a free port of 127.0.0.1.
Each returns a :class:`Server` whose ``stop()`` terminates the process it started and
removes the folder. As root, PostgreSQL runs as the ``postgres`` (or ``nobody``) user and
MariaDB as ``mysql`` (or root with ``--user=root``): neither refuses to start.

Passwords are real (``scram-sha-256`` on TCP for PostgreSQL, ``mysql_native_password`` for
MariaDB) so connection strings, redaction and the COPY path's credential plumbing are
exercised for real. ``fast=True`` (tests) turns durability off; the benchmark uses the
default durable settings.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

PG_BIN_CANDIDATES = [Path(f"/usr/lib/postgresql/{v}/bin") for v in range(20, 11, -1)]
START_TIMEOUT = 60.0


class ServerUnavailable(Exception):
    """The server binaries or the ODBC driver are not installed (tests skip with this)."""


class ServerStartError(RuntimeError):
    """The binaries exist but the server did not start (tests fail loudly with the log)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def odbc_driver(*names: str) -> str:
    """The first of ``names`` registered in the driver manager's odbcinst.ini."""
    from migrator.odbcini import read_ini, system_paths

    path = system_paths().odbcinst_ini
    sections = read_ini(path).sections()
    for n in names:
        if n in sections:
            return n
    raise ServerUnavailable(f"no ODBC driver named {' or '.join(names)} in {path} "
                            f"(run scripts/install-deps)")


@dataclass
class Server:
    kind: str  # postgresql | mariadb
    host: str
    port: int
    user: str
    password: str
    database: str
    driver: str  # ODBC driver name as registered in odbcinst.ini
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    socket_dir: Path | None = None
    stop_signal: int = signal.SIGTERM
    extra_odbc: str = ""
    admin: dict[str, str] = field(default_factory=dict)

    def odbc(self, extra: str = "") -> str:
        """A full ODBC connection string for this server; ``extra`` is appended verbatim."""
        from migrator.connstr import quote_value

        parts = [f"Driver={{{self.driver}}}", f"Server={self.host}", f"Port={self.port}",
                 f"Database={self.database}", f"Uid={self.user}",
                 f"Pwd={quote_value(self.password)}"]
        if self.extra_odbc:
            parts.append(self.extra_odbc)
        if extra:
            parts.append(extra.strip(";"))
        return ";".join(parts)

    def psycopg_dsn(self) -> str:
        return (f"host={self.host} port={self.port} dbname={self.database} "
                f"user={self.user} password={self.password}")

    def log_tail(self, lines: int = 30) -> str:
        if self.log is None or not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(self.stop_signal)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _service_user(*candidates: str) -> pwd.struct_passwd | None:
    """A non-root account to run a server as, when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in candidates:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServerUnavailable(f"running as root and none of the users {candidates} exists")


def _chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    for p in [path, *path.rglob("*")]:
        os.chown(p, user.pw_uid, user.pw_gid)


def _run(cmd: list[str], user: pwd.struct_passwd | None, log: Path, what: str,
         env: dict[str, str] | None = None) -> None:
    with log.open("ab") as fh:
        res = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                             user=user.pw_uid if user else None,
                             group=user.pw_gid if user else None,
                             extra_groups=[] if user else None, check=False, timeout=120)
    if res.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise ServerStartError(f"{what} failed (exit {res.returncode}):\n{tail}")


def _wait_port(server: Server, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc is not None and server.proc.poll() is not None:
            raise ServerStartError(f"{server.kind} exited with {server.proc.returncode}:\n"
                                   f"{server.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(
                (server.host, server.port), timeout=0.5):
            return
        time.sleep(0.05)
    server.stop()
    raise ServerStartError(f"{server.kind} did not accept connections on port {server.port} "
                           f"within {timeout:.0f}s:\n{server.log_tail()}")


# ---- PostgreSQL ------------------------------------------------------------------------------
def pg_bin() -> Path:
    env = os.environ.get("BENCH_PG_BIN")
    for d in ([Path(env)] if env else []) + PG_BIN_CANDIDATES:
        if (d / "initdb").is_file() and (d / "postgres").is_file():
            return d
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise ServerUnavailable("PostgreSQL server binaries (initdb, postgres) not found; "
                            "apt-get install postgresql (or set BENCH_PG_BIN)")


def start_postgres(*, fast: bool = True, database: str = "mbtest",
                   settings: dict[str, str] | None = None,
                   cgroup: Path | None = None) -> Server:
    """initdb a fresh cluster in a temp folder and run it on a free 127.0.0.1 port.

    ``settings`` are extra ``-c name=value`` server settings; ``cgroup`` is a cgroup v1
    directory (e.g. a blkio one) the server process joins before it starts, so every
    process it forks is accounted (and throttled) there."""
    bindir = pg_bin()
    driver = odbc_driver("PostgreSQL Unicode", "PostgreSQL")
    user = _service_user("postgres", "nobody")
    root = Path(tempfile.mkdtemp(prefix="mb-pg-"))
    os.chmod(root, 0o700)
    password = "pw-" + secrets.token_hex(8) + ";}x"  # ; and } exercise ODBC brace quoting
    server = Server("postgresql", "127.0.0.1", free_port(), "bench", password, database,
                    driver, root, log=root / "server.log", socket_dir=root / "sock",
                    stop_signal=signal.SIGINT)  # SIGINT = fast shutdown
    try:
        (root / "sock").mkdir()
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        _chown_tree(root, user)
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        _run([str(bindir / "initdb"), "-D", str(root / "data"), "-U", "bench",
              f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
              "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"],
             user, server.log or root / "x", "initdb", env)
        pwfile.unlink()
        opts = ["-c", "listen_addresses=127.0.0.1", "-p", str(server.port),
                "-c", f"unix_socket_directories={root / 'sock'}", "-c", "max_connections=200",
                "-c", "shared_buffers=64MB", "-c", "log_min_messages=warning",
                "-c", "track_io_timing=on"]
        if fast:
            opts += ["-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off"]
        for name, value in (settings or {}).items():
            opts += ["-c", f"{name}={value}"]
        with (root / "server.log").open("ab") as log:
            if cgroup is not None:
                server.proc = _popen_in_cgroup(
                    [str(bindir / "postgres"), "-D", str(root / "data"), *opts],
                    cgroup, user, log, env)
            else:
                server.proc = subprocess.Popen(
                    [str(bindir / "postgres"), "-D", str(root / "data"), *opts],
                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                    user=user.pw_uid if user else None, group=user.pw_gid if user else None,
                    extra_groups=[] if user else None)
        _wait_port(server)
        # CREATE DATABASE over the trusted local socket (the test user owns the cluster).
        _wait_ready(lambda: _run([str(bindir / "psql"), "-h", str(root / "sock"), "-p",
                                  str(server.port), "-U", "bench", "-d", "postgres", "-q",
                                  "-c", f'CREATE DATABASE "{database}"'],
                                 user, root / "server.log", "CREATE DATABASE", env), server)
    except BaseException:
        server.stop()
        raise
    return server


def _popen_in_cgroup(cmd: list[str], cgroup: Path, user: pwd.struct_passwd | None,
                     log: IO[bytes], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``cmd`` inside ``cgroup``: the child writes its own pid to ``cgroup.procs``
    while still root, then drops to ``user`` (Popen's ``user=`` would drop first)."""
    procs = cgroup / "cgroup.procs"

    def enter() -> None:
        procs.write_text(str(os.getpid()))
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, preexec_fn=enter)


def _wait_ready(step: object, server: Server, timeout: float = START_TIMEOUT) -> None:
    """Retry ``step`` (a callable) until it succeeds: the port opens before the server
    accepts logins."""
    assert callable(step)
    deadline = time.monotonic() + timeout
    while True:
        try:
            step()
            return
        except ServerStartError:
            if time.monotonic() > deadline or (server.proc and server.proc.poll() is not None):
                raise
            time.sleep(0.2)


# ---- MariaDB ---------------------------------------------------------------------------------
def _mariadb_tools() -> tuple[str, str, str]:
    server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/libexec")
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    client = shutil.which("mariadb") or shutil.which("mysql")
    if not (server and install and client):
        raise ServerUnavailable("MariaDB server binaries (mariadbd, mariadb-install-db, "
                                "mariadb) not found; apt-get install mariadb-server")
    return server, install, client


def start_mariadb(*, fast: bool = True, database: str = "mbtest") -> Server:
    """mariadb-install-db a fresh datadir and run mariadbd on a free 127.0.0.1 port."""
    mariadbd, install_db, client = _mariadb_tools()
    driver = odbc_driver("MariaDB Unicode", "MariaDB", "MySQL ODBC 8.0 Unicode Driver")
    user = _service_user("mysql", "root") if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="mb-maria-"))
    os.chmod(root, 0o700)
    password = "pw-" + secrets.token_hex(8) + "}x"
    server = Server("mariadb", "127.0.0.1", free_port(), "bench", password, database,
                    driver, root, log=root / "server.log", socket_dir=root,
                    stop_signal=signal.SIGTERM)
    sock = root / "mysqld.sock"
    user_opt = [f"--user={user.pw_name}"] if user else []
    try:
        (root / "data").mkdir()
        (root / "tmp").mkdir()
        _chown_tree(root, user)
        _run([install_db, "--no-defaults", f"--datadir={root / 'data'}", *user_opt,
              "--auth-root-authentication-method=normal", "--skip-test-db",
              "--skip-name-resolve"], None, root / "server.log", "mariadb-install-db")
        opts = [f"--datadir={root / 'data'}", f"--socket={sock}", f"--port={server.port}",
                "--bind-address=127.0.0.1", f"--pid-file={root / 'mariadbd.pid'}",
                f"--tmpdir={root / 'tmp'}", f"--log-error={root / 'server.log'}",
                "--skip-name-resolve", "--skip-log-bin", "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_bin", "--innodb-buffer-pool-size=64M",
                "--max-connections=200", "--max-allowed-packet=64M", *user_opt]
        if fast:
            opts += ["--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
                     "--sync-binlog=0", "--innodb-log-file-size=32M"]
        with (root / "stdout.log").open("ab") as log:
            server.proc = subprocess.Popen([mariadbd, "--no-defaults", *opts], stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port(server)
        esc = password.replace("\\", "\\\\").replace("'", "\\'")
        sql = (f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin; "
               f"CREATE USER 'bench'@'%' IDENTIFIED BY '{esc}'; "
               f"CREATE USER 'bench'@'localhost' IDENTIFIED BY '{esc}'; "
               f"GRANT ALL ON *.* TO 'bench'@'%'; GRANT ALL ON *.* TO 'bench'@'localhost'; "
               f"FLUSH PRIVILEGES;")
        _wait_ready(lambda: _run([client, "--no-defaults", f"--socket={sock}", "-uroot",
                                  "-e", sql], None, root / "server.log", "CREATE USER"), server)
    except BaseException:
        server.stop()
        raise
    return server
