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
