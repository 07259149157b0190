"""Shared fixtures: the real SAR data folder and a few synthetic inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_MPL_BEFORE = os.environ.get("MPLCONFIGDIR")
_MPL_DIR: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """matplotlib keeps a font cache in ~/.cache or ~/.config: point it at a temporary folder
    before anything imports matplotlib, so that the run writes nothing into the real home."""
    import tempfile

    global _MPL_DIR
    _MPL_DIR = tempfile.mkdtemp(prefix="sarray-tests-mpl-")
    os.environ["MPLCONFIGDIR"] = _MPL_DIR


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    if _MPL_BEFORE is None:
        os.environ.pop("MPLCONFIGDIR", None)
    else:
        os.environ["MPLCONFIGDIR"] = _MPL_BEFORE
    if _MPL_DIR:
        shutil.rmtree(_MPL_DIR, ignore_errors=True)
DATA = Path(os.environ.get("SARRAY_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The read-only real SAR data (../shared/data). Missing data is an error, not a skip."""
    if not (DATA / "README.md").is_file():
        pytest.fail(f"real SAR test data not found at {DATA}; set SARRAY_TEST_DATA")
    return DATA


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API server (moto's) on a free port for the whole run, stopped by its PID."""
    from sarray.testing.s3 import moto_server

    with moto_server() as server:
        yield server


@pytest.fixture
def s3_archive(s3_server, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """``s3://<fresh bucket>/A.zarr`` with the AWS variables pointing at the test server."""
    import re
    import uuid

    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    bucket = f"{name}-{uuid.uuid4().hex[:8]}"
    return s3_server.create_bucket(bucket) + "/A.zarr"


@pytest.fixture(scope="session", autouse=True)
def _ray_token_in_memory():
    """Ray's token authentication (on by default in 2.60) writes ``~/.ray/auth_token`` into the
    real home when a test starts a local Ray and no token is set. A token in the environment,
    for this run only, keeps the home as it was (tests that start a head of their own give it
    a temporary HOME instead)."""
    import secrets

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "token")
        mp.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
        yield


# Processes of a Ray cluster (head, workers, agents) by their command line.
_RAY_PROCESS = ("raylet", "gcs_server", "ray::", "default_worker.py", "dashboard/dashboard.py",
                "dashboard/agent.py", "runtime_env/agent", "log_monitor.py", "ray/autoscaler",
                "monitor.py", "ray_client_server")


def ray_processes_of_this_run() -> list:
    """Ray processes descended from this pytest process (a foreign Ray on the machine is not
    ours: never looked at, never touched)."""
    import psutil

    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if any(k in cmd for k in _RAY_PROCESS):
            found.append(p)
    return found


@pytest.fixture(scope="module", autouse=True)
def _no_ray_left_behind(request: pytest.FixtureRequest):
    """Fails the module whose tests leave Ray processes of their own running (after a grace
    period for Ray's own shutdown), and stops those processes so the run goes on clean."""
    import time

    import psutil

    yield
    deadline = time.monotonic() + 20
    left = ray_processes_of_this_run()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    if left:
        names = sorted({" ".join(p.cmdline())[:80] for p in left if p.is_running()})
        for p in left:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        pytest.fail(f"{request.module.__name__} left {len(left)} Ray process(es) running: {names}")
