"""A real S3 API server for tests and benchmarks: moto's server on a free port, in a process of
its own, stopped by its PID (no mock of any client library)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Credentials moto accepts; they only exist inside the test server.
TEST_KEY_ID = "sarray-test-key"
TEST_SECRET = "sarray-test-secret"
TEST_REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """A running S3 API server."""

    endpoint: str
    pid: int

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point sarray (and any S3 client) at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": TEST_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": TEST_SECRET, "AWS_REGION": TEST_REGION,
                "AWS_ALLOW_HTTP": "true"}

    def create_bucket(self, name: str) -> str:
        """Create a bucket (a plain S3 ``PUT /bucket``); returns ``s3://name``."""
        req = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        urllib.request.urlopen(req, timeout=10).read()
        return f"s3://{name}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server(log: Path | None = None) -> Iterator[S3Server]:
    """Start ``moto_server`` on a free local port; stop it (and only it) on exit."""
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if exe is None:
        raise RuntimeError("moto_server not found: install the dev extra (moto[server])")
    port = _free_port()
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on port {port}") from None
                time.sleep(0.1)
        yield S3Server(endpoint=endpoint, pid=proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: only moto and its children
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


class CountingProxy:
    """A TCP proxy of its own between S3 clients and a server: counts the bytes each way, and
    can cut every connection (and refuse new ones) for an outage, then let them through again.
    Point ``AWS_ENDPOINT_URL`` at :attr:`endpoint`.

    Use as a context manager; threads only, stopped on exit."""

    def __init__(self, target: str) -> None:
        from urllib.parse import urlparse

        u = urlparse(target)
        self.target = (u.hostname or "127.0.0.1", int(u.port or 80))
        self.down = 0  # bytes from the server to the clients
        self.up = 0  # bytes from the clients to the server
        self._cut = False
        self.refused = 0  # connections refused while cut: clients that tried during an outage
        self._socks: set[socket.socket] = set()
        self._lock = __import__("threading").Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.endpoint = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._closed = False

    def __enter__(self) -> CountingProxy:
        import threading

        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self._server.close()
        self.cut()

    def reset(self) -> None:
        self.down = self.up = 0

    def cut(self) -> None:
        """Close every open connection and refuse new ones until :meth:`restore`."""
        self._cut = True
        with self._lock:
            socks, self._socks = list(self._socks), set()
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self._cut = False

    def _accept(self) -> None:
        import threading

        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._cut:
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, "down"), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, way: str) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    if way == "down":
                        self.down += len(data)
                    else:
                        self.up += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
