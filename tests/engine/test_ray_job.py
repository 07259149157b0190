"""`ray job submit` of jobs/translate.py against a head started with `ray start` (token auth on)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sarray.archive.store import Archive
from sarray.ingest.config import IngestConfig
from sarray.ingest.run import ingest
from sarray.testing.scenes import speckle_image, write_geotiff

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory):
    """A head of our own: a temporary HOME (its auth token), its own temp dir and free ports,
    started in its own process group and stopped by it (never Ray's stop command, which would
    stop every Ray on the machine)."""
    import shutil
    import signal
    import tempfile
    import time
    import urllib.error
    import urllib.request

    import psutil

    ray_bin = Path(sys.executable).with_name("ray")
    home = tmp_path_factory.mktemp("home")
    temp_dir = tempfile.mkdtemp(prefix="sr-", dir="/tmp")  # short: Ray's socket paths are limited
    # Token authentication, set deliberately for the head and for the client (cluster/README.md).
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
           "RAY_AUTH_MODE": "token", "HOME": str(home)}
    subprocess.run([str(ray_bin), "get-auth-token", "--generate"], check=True, capture_output=True,
                   env=env, timeout=60)
    port, dash = _free_port(), _free_port()
    log = open(home / "ray-head.log", "wb")
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", "--num-cpus", "2", "--port", str(port),
         "--dashboard-port", str(dash), "--include-dashboard", "true", "--temp-dir", temp_dir,
         "--disable-usage-stats"], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=2).read()
                break
            except urllib.error.HTTPError:
                break  # the dashboard answers (it refuses us without the token): up
            except OSError:
                if head.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Ray head did not start: {(home / 'ray-head.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield ray_bin, address, env
    finally:
        ours = [head.pid] + [c.pid for c in psutil.Process(head.pid).children(recursive=True)] \
            if head.poll() is None else [head.pid]
        try:
            os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops what it started
            head.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        for pid in ours:  # anything of ours still alive
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass
        head.wait()
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_job_submit_translates_on_the_cluster(ray_head, tmp_path: Path) -> None:
    ray_bin, address, env = ray_head
    tif = write_geotiff(tmp_path / "j_vv.tif", speckle_image((64, 96), seed=8, looks=4))
    arch = tmp_path / "a.zarr"
    ingest([tif], arch, IngestConfig(units="linear"))
    # Token auth stays on: the client on the head machine reads $HOME/.ray/auth_token (a
    # temporary HOME here).
    res = subprocess.run(
        [str(ray_bin), "job", "submit", "--address", address, "--working-dir", str(REPO / "jobs"),
         "--", sys.executable, "translate.py", str(arch), "j_vv", "--scale", "2",
         "--chunk-px", "64", "--halo-px", "8", "--model", "tiny-random", "--steps", "2",
         "--quiet"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "j_vv_x2: complete" in res.stdout
    out = Archive(arch).open_scene("j_vv_x2")["backscatter"].values
    assert out.shape == (1, 128, 192) and np.isfinite(out).all()


def test_ray_job_submit_without_the_token_is_refused(ray_head, tmp_path: Path) -> None:
    ray_bin, address, env = ray_head
    bad = {**env, "RAY_AUTH_TOKEN": "0" * 64}
    res = subprocess.run([str(ray_bin), "job", "submit", "--address", address, "--", "true"],
                         capture_output=True, text=True, env=bad, timeout=120)
    assert res.returncode != 0
    assert "Authentication" in res.stdout + res.stderr or "Unauthorized" in res.stdout + res.stderr
