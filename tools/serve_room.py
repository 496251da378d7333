"""Several dashboard servers on one machine behind one address: a room bigger than one server process holds.

    python -m tools.serve_room --servers 2 --port 8501      # or: make serve-room SERVERS=2

starts ``--servers`` Streamlit server processes (``tools.streamlit_server.serve``: ``streamlit run app.py``, each
on a free port of 127.0.0.1) and nginx in front of them on ``--address:--port``, the address the room opens; Ctrl-C
stops them all.  One Streamlit server runs every page script of its participants in one Python process, so its
redraws share one interpreter lock; several servers use several cores.

What the servers share, through files on this machine (nothing to set up): the class board (one SQLite file,
``PEFT_EXPLORER_BOARD``, default ``<cache>/class-board.sqlite``; every write one transaction, rate limits kept in
the file) and the lesson room beside it (``explorer.workshop.room``: ``lesson-room.sqlite`` in the board's folder).
What each server keeps to itself: its participants' sessions (a session is one WebSocket to one server; each
server gets a session folder of its own, ``<sessions>/server-<i>``), its run queue and its worker processes.

**Sticky sessions.**  A participant must reach the same server with every request: the page's WebSocket
(``/_stcore/stream``), its uploads (``/_stcore/upload_file``) and its media and downloads live in that server's
memory.  The proxy pins a browser to a server with a cookie (``peftx_server=s<i>``) that it sets on the first
answer; a newcomer goes to the server with the fewest open connections (``least_conn``), so the room spreads
over the servers as it arrives.  ``--sticky ip`` pins by the client's address instead (``ip_hash``): no cookie,
but a classroom behind one NAT address would all land on one server.  When a participant's server stops, the
proxy sends them to another one (its pages start afresh there).

**WebSockets through nginx.**  ``proxy_http_version 1.1`` with the ``Upgrade`` and ``Connection`` headers passed
on, the ``Host`` header with its port (Streamlit compares the page's ``Origin`` with it), read and send timeouts
of a day (a page's WebSocket is quiet while its participant reads) and no buffering (progress arrives as it is
sent).  ``client_max_body_size`` follows the upload limit (``python -m explorer.limits``).

**Runs.**  Each server runs at most ``PEFT_EXPLORER_MAX_RUNS`` fine-tunes at once, so ``--runs R`` (the room's
total, default 2) gives each server ``max(1, R // servers)`` and each run ``cores // R`` torch threads.  With
``PEFT_EXPLORER_EXECUTOR=ray`` and ``PEFT_EXPLORER_RAY_ADDRESS`` in the environment every server sends its runs
to one Ray cluster instead (``explorer.workshop.ray_executor``), which then bounds how many train at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

if __package__ in (None, ""):  # python tools/serve_room.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.streamlit_server import ROOT, Server, free_port, serve, stop  # noqa: E402

COOKIE = "peftx_server"
HEADER = "X-Peftx-Server"  # which server answered (for tests and for a teacher's curiosity)
STICKY = ("cookie", "ip")


class ProxyDidNotStart(RuntimeError):
    pass


def nginx_binary() -> str | None:
    """nginx on this machine (``apt-get install nginx`` on Debian), or None."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                          if os.access(p, os.X_OK)), None)


def nginx_config(upstreams: Sequence[str], port: int, folder: Path, address: str = "127.0.0.1",
                 sticky: str = "cookie", max_body_mb: int = 200, workers: int = 1) -> str:
    """An nginx configuration that puts the servers at ``upstreams`` ("127.0.0.1:8601", ...) behind
    ``address:port``, with its pid, logs and temporary files in ``folder`` (nginx runs in the foreground)."""
    if sticky not in STICKY:
        raise ValueError(f"sticky must be one of {STICKY}, not {sticky!r}")
    if not upstreams:
        raise ValueError("no upstream servers")
    names = [f"s{i}" for i in range(1, len(upstreams) + 1)]
    f = Path(folder)
    out = [f"# written by tools/serve_room.py: {len(upstreams)} dashboard servers behind {address}:{port}",
           f"worker_processes {int(workers)};", "daemon off;", f"pid {f}/nginx.pid;",
           f"error_log {f}/error.log warn;", "events { worker_connections 4096; }", "http {",
           "  access_log off;",
           *(f"  {kind}_temp_path {f}/tmp/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
           "  # a WebSocket upgrade is passed on; other requests keep the upstream connection plain",
           "  map $http_upgrade $connection_upgrade { default upgrade; '' close; }"]
    if sticky == "ip":
        out += ["  upstream peftx_room {", "    ip_hash;", *(f"    server {u};" for u in upstreams), "  }"]
        target = "peftx_room"
    else:
        # newcomers: the server with the fewest open connections (a page's WebSocket stays open)
        out += ["  upstream peftx_any {", "    least_conn;", "    zone peftx_any 64k;",
                *(f"    server {u};" for u in upstreams), "  }"]
        for name, u in zip(names, upstreams):  # a pinned browser: its server, the others if it is down
            out += [f"  upstream peftx_{name} {{", f"    server {u};",
                    *(f"    server {o} backup;" for o in upstreams if o != u), "  }"]
        out += [f"  map $cookie_{COOKIE} $peftx_upstream {{", "    default peftx_any;",
                *(f"    {n} peftx_{n};" for n in names), "  }",
                "  # the server that answered: the last address nginx tried",
                "  map $upstream_addr $peftx_answered {", "    default '';",
                *(f"    \"~(^|[ ,]){_re(u)}$\" {n};" for n, u in zip(names, upstreams)), "  }",
                "  # set the cookie when it is missing or names another server than the one that answered",
                f"  map \"$cookie_{COOKIE}:$peftx_answered\" $peftx_set_cookie {{",
                f"    default \"{COOKIE}=$peftx_answered; Path=/; HttpOnly; SameSite=Lax\";",
                *(f"    {n}:{n} '';" for n in names), "    \"~:$\" '';", "  }"]
        target = "$peftx_upstream"
    out += ["  server {", f"    listen {address}:{int(port)};", f"    client_max_body_size {int(max_body_mb)}m;",
            "    location / {", f"      proxy_pass http://{target};",
            "      proxy_http_version 1.1;",
            "      proxy_set_header Upgrade $http_upgrade;",
            "      proxy_set_header Connection $connection_upgrade;",
            "      proxy_set_header Host $http_host;",
            "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "      proxy_set_header X-Forwarded-Proto $scheme;",
            "      proxy_read_timeout 1d;", "      proxy_send_timeout 1d;",
            "      proxy_buffering off;", "      proxy_request_buffering off;"]
    if sticky == "cookie":
        out += ["      add_header Set-Cookie $peftx_set_cookie always;",
                f"      add_header {HEADER} $peftx_answered always;"]
    else:
        out += [f"      add_header {HEADER} $upstream_addr always;"]
    out += ["    }", "  }", "}", ""]
    return "\n".join(out)


def _re(addr: str) -> str:
    return addr.replace(".", r"\.")


@dataclass
class Proxy:
    url: str
    port: int
    proc: subprocess.Popen
    folder: Path
    config: Path

    def log(self) -> str:
        try:
            return (self.folder / "error.log").read_text()[-2000:]
        except OSError:
            return ""


def _answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def proxy(upstreams: Sequence[str], port: int | None = None, address: str = "127.0.0.1", sticky: str = "cookie",
          folder: str | Path | None = None, max_body_mb: int | None = None, timeout: float = 30.0) -> Iterator[Proxy]:
    """nginx in front of ``upstreams`` on ``address:port`` (a free port by default), its configuration and files
    in ``folder`` (a temporary one by default, removed after); stopped when the block ends."""
    exe = nginx_binary()
    if exe is None:
        raise ProxyDidNotStart("nginx is not installed (Debian: apt-get install nginx, or make nginx)")
    if max_body_mb is None:
        from explorer.limits import streamlit_max_upload_mb

        max_body_mb = streamlit_max_upload_mb() + 1
    port = port or free_port()
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="peftx-proxy-"))
        f = Path(folder).resolve()
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (f / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # nginx's workers drop to nobody: they must reach the temporary files
            for p in [f, f / "tmp", *(f / "tmp").iterdir()]:
                p.chmod(0o777 if p.parent == f / "tmp" else 0o755)
        conf = f / "nginx.conf"
        conf.write_text(nginx_config(upstreams, port, f, address, sticky, max_body_mb))
        check = subprocess.run([exe, "-t", "-q", "-p", str(f), "-c", str(conf)], capture_output=True, text=True)
        if check.returncode != 0:
            raise ProxyDidNotStart("nginx refused the configuration: " + (check.stderr.strip()[-600:] or "?"))
        proc = subprocess.Popen([exe, "-p", str(f), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT)
        host = "127.0.0.1" if address in ("0.0.0.0", "") else address
        p = Proxy(url=f"http://{host}:{port}", port=port, proc=proc, folder=f, config=conf)
        try:
            t0 = time.monotonic()
            while not _answers(p.url):
                if proc.poll() is not None:
                    raise ProxyDidNotStart(f"nginx exited with status {proc.returncode}: {p.log()}")
                if time.monotonic() - t0 > timeout:
                    raise ProxyDidNotStart(f"nginx did not pass a health check on within {timeout:.0f} s: {p.log()}")
                time.sleep(0.1)
            yield p
        finally:
            stop(proc)


@dataclass
class Room:
    url: str
    servers: list[Server] = field(default_factory=list)
    proxy: Proxy | None = None


def server_env(i: int, n: int, runs: int, env: dict | None, sessions: Path | None) -> dict:
    """Server ``i``'s environment (1-based, ``n`` servers, ``runs`` at once in the room)."""
    out = dict(env or {})
    if sessions is not None:
        out.setdefault("PEFT_EXPLORER_SESSIONS", str(Path(sessions) / f"server-{i}"))
    out.setdefault("PEFT_EXPLORER_MAX_RUNS", str(max(1, runs // n)))
    out.setdefault("PEFT_EXPLORER_TORCH_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, runs))))
    return out


def default_sessions_root() -> Path:
    base = os.environ.get("PEFT_EXPLORER_SESSIONS")
    if base:
        return Path(base)
    from explorer.model_files import cache_dir

    return cache_dir() / "sessions-room"


@contextlib.contextmanager
def room(servers: int = 2, port: int | None = None, address: str = "127.0.0.1", runs: int = 2,
         env: dict | None = None, sessions: str | Path | None = None, sticky: str = "cookie", args: tuple = (),
         log_dir: str | Path | None = None, root: Path = ROOT, folder: str | Path | None = None) -> Iterator[Room]:
    """``servers`` dashboard servers (``tools.streamlit_server.serve``) behind :func:`proxy`.  ``env`` goes to
    every server (the board's file, the executor...); each gets its own session folder under ``sessions``."""
    if servers < 1:
        raise ValueError("at least one server")
    from explorer.limits import streamlit_max_upload_mb

    up_mb = streamlit_max_upload_mb()
    sessions = Path(sessions) if sessions is not None else default_sessions_root()
    with contextlib.ExitStack() as stack:
        started = []
        for i in range(1, servers + 1):
            log = Path(log_dir) / f"server-{i}.log" if log_dir else None
            started.append(stack.enter_context(serve(
                env=server_env(i, servers, runs, env, sessions), log=log, root=root,
                args=("--server.maxUploadSize", str(up_mb), *args))))
        px = stack.enter_context(proxy([s.url.removeprefix("http://") for s in started], port=port, address=address,
                                       sticky=sticky, folder=folder, max_body_mb=up_mb + 1))
        yield Room(url=px.url, servers=started, proxy=px)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--servers", type=int, default=2, help="Streamlit server processes (default 2)")
    ap.add_argument("--port", type=int, default=8501, help="the room's port (the proxy's)")
    ap.add_argument("--address", default="localhost", help="the room's address (0.0.0.0: every interface)")
    ap.add_argument("--runs", type=int, default=2, help="fine-tunes training at once in the whole room (default 2)")
    ap.add_argument("--sticky", choices=STICKY, default="cookie")
    ap.add_argument("--logs", default=None, help="a folder for the servers' logs (default: dropped)")
    ap.add_argument("--lesson", default=None, help="a lesson file offered to the teacher (as make run LESSON=...)")
    a = ap.parse_args(argv)
    if a.servers < 1 or a.runs < 1:
        ap.error("--servers and --runs must be at least 1")
    if nginx_binary() is None:
        ap.error("nginx is not installed: make nginx (Debian's package), or apt-get install nginx")
    address = "127.0.0.1" if a.address == "localhost" else a.address
    if a.logs:
        Path(a.logs).mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the context managers stop the servers and nginx
    try:
        with room(a.servers, port=a.port, address=address, runs=a.runs, log_dir=a.logs,
                  args=("--", "--lesson", a.lesson) if a.lesson else ()) as r:
            print(f"{a.servers} servers behind {r.url.replace('127.0.0.1', a.address)} "
                  f"({', '.join(s.url for s in r.servers)}; nginx config {r.proxy.config}); Ctrl-C stops them",
                  flush=True)
            while True:
                for s in r.servers:
                    if s.proc.poll() is not None:
                        print(f"the server at {s.url} exited with status {s.proc.returncode}", flush=True)
                        return 1
                if r.proxy.proc.poll() is not None:
                    print(f"nginx exited with status {r.proxy.proc.returncode}: {r.proxy.log()}", flush=True)
                    return 1
                time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping the servers and the proxy", flush=True)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
