"""The Ray Jobs API against a head of our own (token auth on, temporary HOME, free ports):
translate submitted, its logs and metrics read, stopped midway and resubmitted to finish by
resume equal to an uninterrupted run; a 2-worker training job whose weights load; and an
unauthenticated submit refused."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from sarray.archive.store import Archive
from sarray.ingest.config import IngestConfig
from sarray.ingest.run import ingest
from sarray.testing.scenes import speckle_image, write_geotiff, write_hr_archive

REPO = Path(__file__).resolve().parents[2]
TRANSLATE = ["--scale", "2", "--chunk-px", "64", "--halo-px", "8", "--model", "tiny-random",
             "--steps", "6", "--batch-size", "1"]


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
    import urllib.error

    import psutil

    ray_bin = Path(sys.executable).with_name("ray")
    home = tmp_path_factory.mktemp("home")
    temp_dir = tempfile.mkdtemp(prefix="sr-", dir="/tmp")  # short: Ray's socket paths are limited
    # Token authentication, set deliberately for the head and for the client (cluster/README.md).
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
           "RAY_AUTH_MODE": "token", "HOME": str(home), "RAY_metrics_report_interval_ms": "1000"}
    subprocess.run([str(ray_bin), "get-auth-token", "--generate"], check=True, capture_output=True,
                   env=env, timeout=60)
    token = (home / ".ray" / "auth_token").read_text().strip()
    port, dash, metrics = _free_port(), _free_port(), _free_port()
    log = open(home / "ray-head.log", "wb")
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", "--num-cpus", "3", "--port", str(port),
         "--dashboard-port", str(dash), "--include-dashboard", "true", "--temp-dir", temp_dir,
         "--metrics-export-port", str(metrics), "--disable-usage-stats"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
        yield {"address": address, "token": token, "metrics": f"http://127.0.0.1:{metrics}/metrics",
               "env": env, "ray": ray_bin}
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


def _client(head: dict, token: str | None = None):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(head["address"],
                               headers={"Authorization": f"Bearer {token or head['token']}"})


def _runtime_env(**env_vars: str) -> dict:
    """cluster/runtime_env.yaml, with the repository as the working directory. Its ``pip`` pins
    are left out: this head runs in the environment they describe (tests/test_lock.py checks
    that), and a per-job install of 189 packages is not what is tested here."""
    env = yaml.safe_load((REPO / "cluster" / "runtime_env.yaml").read_text())
    assert len(env.pop("pip")) > 100
    env["working_dir"] = str(REPO)
    env["env_vars"] = {**env.get("env_vars", {}), **env_vars}
    return env


def _wait(client, job_id: str, states: set[str], timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = str(client.get_job_status(job_id).value)
        if status in states:
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {status} after {timeout} s:\n{client.get_job_logs(job_id)[-3000:]}")


def _chunks_done(logs: str) -> tuple[int, int]:
    found = re.findall(r"(\d+)/(\d+) \[", logs)
    return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)


def test_translate_job_logs_metrics_stop_and_resume(ray_head, tmp_path: Path) -> None:
    tif = write_geotiff(tmp_path / "j_vv.tif", speckle_image((320, 384), seed=8, looks=4))
    arch = tmp_path / "a.zarr"
    ingest([tif], arch, IngestConfig(units="linear"))
    client = _client(ray_head)
    entry = f"{sys.executable} jobs/translate.py {arch} j_vv {' '.join(TRANSLATE)}"
    runtime_env = _runtime_env(SARRAY_SUMMARY_EVERY_S="1")

    # 1. Submit; read its logs and the metrics endpoint while it runs; stop it midway.
    job = client.submit_job(entrypoint=entry, runtime_env=runtime_env)
    # Every metric but the retries (no retry, no series) is exported while the job runs.
    wanted = ("sarray_tiles_total", "sarray_tiles_per_second", "sarray_tiles_queued",
              "sarray_tiles_in_flight", "sarray_replica_busy_share", "sarray_chunk_write_seconds")
    metrics_text = ""
    deadline = time.monotonic() + 300
    while True:
        logs = client.get_job_logs(job)
        done, total = _chunks_done(logs)
        if not all(name in metrics_text for name in wanted):
            try:
                metrics_text = urllib.request.urlopen(ray_head["metrics"], timeout=5).read().decode()
            except OSError:
                metrics_text = ""
        if done >= 40 and all(name in metrics_text for name in wanted):
            break
        status = str(client.get_job_status(job).value)
        assert status in ("PENDING", "RUNNING"), f"{status} before it could be stopped:\n{logs[-3000:]}"
        assert time.monotonic() < deadline, logs[-3000:]
        time.sleep(0.3)
    assert client.stop_job(job)
    assert _wait(client, job, {"STOPPED", "FAILED", "SUCCEEDED"}) == "STOPPED"
    assert 0 < done < total == 120  # 320x384 at x2: 640x768 in 64-px chunks
    # The job's log carries the metrics' one-line summary; the endpoint has every metric, tagged.
    assert re.search(r"sarray: \d+ s: [\d.]+ tiles/s, \d+ tiles done, \d+ queued, \d+ in flight, "
                     r"replicas busy \d+%", logs), logs[-2000:]
    assert re.search(r'sarray_tiles_total\{[^}]*scene="j_vv"', metrics_text)

    # 2. Submit it again: it resumes from the last commit and finishes.
    again = client.submit_job(entrypoint=entry, runtime_env=runtime_env)
    assert _wait(client, again, {"SUCCEEDED", "FAILED", "STOPPED"}) == "SUCCEEDED", \
        client.get_job_logs(again)[-3000:]
    line = [l for l in client.get_job_logs(again).splitlines() if l.startswith("j_vv_x2: complete")]
    assert line, client.get_job_logs(again)[-2000:]
    written, total = (int(v) for v in re.search(r"(\d+)/(\d+) chunks", line[0]).groups())
    assert total == 120 and 0 < written < 120  # only what the stopped run had not committed

    # 3. Equal to an uninterrupted run on the same cluster (same threads per replica).
    whole = client.submit_job(entrypoint=f"{entry} --out {tmp_path / 'b.zarr'} --quiet",
                              runtime_env=runtime_env)
    assert _wait(client, whole, {"SUCCEEDED", "FAILED", "STOPPED"}) == "SUCCEEDED", \
        client.get_job_logs(whole)[-3000:]
    np.testing.assert_array_equal(Archive(arch).open_scene("j_vv_x2")["backscatter"].values,
                                  Archive(tmp_path / "b.zarr").open_scene("j_vv_x2")["backscatter"].values)


def test_training_job_on_two_ray_workers_exports_weights_that_load(ray_head, tmp_path: Path) -> None:
    hr = write_hr_archive(tmp_path)
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "run"), "steps": 2, "batch_size": 2, "zero_stage": 2,
        "val_tiles": 1, "data": {"archive": str(hr), "tile_px": 64, "val_scenes": ["hr-2"]}}))
    client = _client(ray_head)
    job = client.submit_job(
        entrypoint=f"{sys.executable} jobs/train.py --config {cfg} --launcher ray --workers 2",
        runtime_env=_runtime_env(
            OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu",
            TORCH_EXTENSIONS_DIR=os.environ.get("TORCH_EXTENSIONS_DIR", str(REPO / ".torch_extensions"))))
    assert _wait(client, job, {"SUCCEEDED", "FAILED", "STOPPED"}, timeout=600) == "SUCCEEDED", \
        client.get_job_logs(job)[-3000:]
    summary = [l for l in client.get_job_logs(job).splitlines() if '"world_size": 2' in l]
    assert summary, client.get_job_logs(job)[-3000:]
    export = Path(__import__("json").loads(summary[-1])["export"])
    assert (export / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    from sarray.models.replica import Replica, ReplicaConfig
    from sarray.testing.models import speckle_scene

    replica = Replica(ReplicaConfig(preset="tiny", weights=str(export), scale=4))
    values, meta = speckle_scene((16, 16), pols=("HH",), spacing_m=4.0)
    out = replica.translate_tile(values, scene_id="s", tile_index=0, meta=meta)
    assert out.shape == (1, 64, 64) and np.isfinite(out).all()


def test_a_submit_without_the_token_is_refused(ray_head) -> None:
    with pytest.raises(Exception, match=r"(?i)401|unauthori|authenticat"):
        _client(ray_head, token="0" * 64).submit_job(entrypoint="true")
    with pytest.raises(Exception, match=r"(?i)401|unauthori|authenticat"):
        urllib.request.urlopen(f"{ray_head['address']}/api/jobs/", timeout=10).read()
