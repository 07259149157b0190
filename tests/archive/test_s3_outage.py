"""An S3 outage in the middle of a run: a TCP proxy of the tests' own between sarray and the moto
server cuts every connection, and refuses new ones, for a few seconds.

Each run either finishes after the outage with the result of an undisturbed run, or stops with
one ``sarray: error:`` line, and then a rerun finishes by resume. Either way the archive never
lists a partial scene and loses no commit. The waiting is Icechunk's and obstore's own retries
(``sarray.config.S3_MAX_TRIES`` and the backoffs), not a loop of sarray's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from sarray.archive.store import Archive
from sarray.testing.s3 import CountingProxy
from sarray.testing.scenes import speckle_image, write_geotiff

OUTAGE_S = 4.0


@pytest.fixture
def proxied(s3_server, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """(proxy, s3://bucket): this test's AWS variables point at a proxy of the moto server."""
    import uuid

    bucket = s3_server.create_bucket(f"outage-{uuid.uuid4().hex[:10]}")
    with CountingProxy(s3_server.endpoint) as proxy:
        for k, v in {**s3_server.env(), "AWS_ENDPOINT_URL": proxy.endpoint}.items():
            monkeypatch.setenv(k, v)
        yield proxy, bucket


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sarray.cli", *args], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cut_when(proxy: CountingProxy, proc: subprocess.Popen, up_bytes: list[int]) -> list[bool]:
    """Cut the proxy for OUTAGE_S each time the bytes sent to the server pass one of
    ``up_bytes`` (in a thread); returns, per cut, whether the run was still going when it came."""
    hit: list[bool] = []

    def run() -> None:
        for mark in up_bytes:
            while proxy.up < mark and proc.poll() is None:
                time.sleep(0.002)
            hit.append(proc.poll() is None)
            proxy.cut()
            time.sleep(OUTAGE_S)
            proxy.restore()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    proc.wait(timeout=600)
    t.join(timeout=60)
    proxy.restore()
    return hit


def _finish(proc: subprocess.Popen, rerun: list[str]) -> str:
    """The run's outcome (``finished`` or ``resumed``): a failed run's stderr is one
    ``sarray: error:`` line, and its rerun finishes."""
    out, err = proc.communicate()
    if proc.returncode == 0:
        return "finished"
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("sarray: error:"), err[-3000:]
    assert "Traceback" not in err
    again = _cli(*rerun)
    out2, err2 = again.communicate(timeout=600)
    assert again.returncode == 0, err2[-3000:]
    return "resumed"


def test_an_outage_during_an_ingest_is_waited_out_or_resumed(proxied, tmp_path: Path) -> None:
    proxy, bucket = proxied
    arch = f"{bucket}/A.zarr"
    tif = write_geotiff(tmp_path / "big_vv.tif", speckle_image((1536, 1536), seed=5))
    small = write_geotiff(tmp_path / "small_vv.tif", speckle_image((128, 128), seed=6))
    first = _cli("ingest", str(small), "-a", arch, "-q")
    assert first.wait(timeout=300) == 0, first.communicate()[1]
    before = Archive(arch).catalog()
    start = proxy.up
    args = ["ingest", str(tif), "-a", arch, "-q", "--chunk-px", "256"]
    proc = _cli(*args)
    refused = proxy.refused
    hit = _cut_when(proxy, proc, [start + 3_000_000])
    assert hit == [True] and proxy.refused > refused, "the outage missed the ingest's requests"
    outcome = _finish(proc, args)
    a = Archive(arch)
    assert sorted(a.catalog()) == sorted([*before, "big_vv"]) and a.intents() == []
    with rasterio.open(tif) as f:
        np.testing.assert_array_equal(a.open_scene("big_vv")["backscatter"].values[0], f.read(1))
    np.testing.assert_array_equal(a.open_scene("small_vv")["backscatter"].values[0],
                                  rasterio.open(small).read(1))
    print(f"ingest outage: {outcome}")


def test_an_outage_during_a_translate_gives_the_undisturbed_result(proxied, tmp_path: Path) -> None:
    """Two outages in one translate, with commits every few chunks: one lands between commits,
    the other most likely during one. The output equals an undisturbed translate's."""
    proxy, bucket = proxied
    arch = f"{bucket}/A.zarr"
    tif = write_geotiff(tmp_path / "t_vv.tif", speckle_image((192, 256), seed=9, looks=4))
    assert _cli("ingest", str(tif), "-a", arch, "-q", "--units", "linear").wait(timeout=300) == 0
    common = ["translate", arch, "t_vv", "--model", "tiny-random", "--scale", "2", "--chunk-px", "32",
              "--halo-px", "4", "--replicas", "1", "-q"]
    start = proxy.up
    straight = _cli(*common, "--out-scene", "straight")
    assert straight.wait(timeout=600) == 0, straight.communicate()[1][-3000:]
    span, start = proxy.up - start, proxy.up  # what an undisturbed run sends
    args = [*common, "--out-scene", "cut"]
    proc = _cli(*args)
    hit = _cut_when(proxy, proc, [start + int(0.3 * span), start + int(0.65 * span)])
    assert hit[0], "the first outage came after the translate had ended"
    outcome = _finish(proc, args)
    a = Archive(arch)
    assert {"straight", "cut"} <= set(a.catalog()) and a.intents() == []
    np.testing.assert_array_equal(a.open_scene("cut")["backscatter"].values,
                                  a.open_scene("straight")["backscatter"].values)
    print(f"translate outage: {outcome}, cuts while running: {hit}")


def test_an_endpoint_gone_for_good_is_one_line_and_a_rerun_finishes(
        proxied, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoint stops answering mid-ingest and stays down: with one try per request
    (SARRAY_S3_MAX_TRIES=1) the ingest stops with one ``sarray: error:`` line, lists nothing,
    and once the endpoint is back its rerun finishes."""
    proxy, bucket = proxied
    arch = f"{bucket}/A.zarr"
    small = write_geotiff(tmp_path / "small_vv.tif", speckle_image((128, 128), seed=6))
    assert _cli("ingest", str(small), "-a", arch, "-q").wait(timeout=300) == 0
    tif = write_geotiff(tmp_path / "big_vv.tif", speckle_image((1024, 1024), seed=5))
    monkeypatch.setenv("SARRAY_S3_MAX_TRIES", "1")
    start = proxy.up
    args = ["ingest", str(tif), "-a", arch, "-q", "--chunk-px", "256"]
    proc = _cli(*args)
    while proxy.up < start + 1_000_000 and proc.poll() is None:
        time.sleep(0.002)
    assert proc.poll() is None, "the ingest ended before the endpoint went"
    proxy.cut()
    out, err = proc.communicate(timeout=300)
    proxy.restore()
    assert proc.returncode == 1 and proxy.refused > 0, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sarray: error:"), err[-3000:]
    assert sorted(Archive(arch).catalog()) == ["small_vv"]  # nothing partial listed
    monkeypatch.delenv("SARRAY_S3_MAX_TRIES")
    again = _cli(*args)
    assert again.wait(timeout=300) == 0, again.communicate()[1][-3000:]
    a = Archive(arch)
    assert sorted(a.catalog()) == ["big_vv", "small_vv"] and a.intents() == []
    with rasterio.open(tif) as f:
        np.testing.assert_array_equal(a.open_scene("big_vv")["backscatter"].values[0], f.read(1))
    print(f"gone for good: {lines[0]}")
