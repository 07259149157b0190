"""Shared fixtures: the real SAR data folder and a few synthetic inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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
