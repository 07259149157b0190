"""The cluster configs: Ray's own validation of the launcher YAML, the KubeRay manifests against
the KubeRay CRD schemas (every field they use exists), the same sizing in both manifests, token
auth on, the dashboard not exposed, and the pinned runtime environments."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBERAY = REPO / "cluster" / "kuberay"


def test_the_cluster_launcher_yaml_passes_rays_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster" / "gpu-cluster.yaml").read_text())
    validate_config(prepare_config(config))
    assert config["available_node_types"]["head"]["resources"] == {"CPU": 0}
    starts = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in starts and "--object-store-memory" in starts
    assert "--dashboard-host=127.0.0.1" in starts  # the head's dashboard stays on the host
    # A config with an unknown field is refused by the same validation (it is not a no-op).
    with pytest.raises(Exception):
        validate_config(prepare_config({**config, "max_wokers": 3}))


def _schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load(gzip.open(KUBERAY / "crds" / f"ray.io_{kind}.yaml.gz").read())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def unknown_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths in ``obj`` that ``schema`` (OpenAPI v3, as in a CRD) does not define."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-int-or-string"):
        return []
    bad = []
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for k, v in obj.items():
            if props is not None and k in props:
                bad += unknown_fields(v, props[k], f"{path}.{k}")
            elif isinstance(extra, dict):
                bad += unknown_fields(v, extra, f"{path}.{k}")
            elif extra is True:
                continue
            else:
                bad.append(f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            bad += unknown_fields(v, schema.get("items", {}), f"{path}[{i}]")
    return bad


@pytest.mark.parametrize("name,kind", [("raycluster.yaml", "rayclusters"), ("rayjob.yaml", "rayjobs")])
def test_kuberay_manifests_use_only_fields_of_the_crds(name: str, kind: str) -> None:
    doc = yaml.safe_load((KUBERAY / name).read_text())
    schema = _schema(kind)
    assert unknown_fields({k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")},
                          schema) == []
    # The check sees a misspelt field.
    assert unknown_fields({"spec": {"headGroupSpec": {"serviceTipe": "ClusterIP"}}}, schema) != []


def test_both_manifests_size_alike_with_token_auth_and_no_exposed_dashboard() -> None:
    cluster = yaml.safe_load((KUBERAY / "raycluster.yaml").read_text())["spec"]
    job = yaml.safe_load((KUBERAY / "rayjob.yaml").read_text())["spec"]
    inner = job["rayClusterSpec"]
    for spec in (cluster, inner):
        assert spec["authOptions"] == {"mode": "token"}
        assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    head = lambda s: s["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]  # noqa: E731
    gpu = lambda s: s["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]  # noqa: E731
    assert head(cluster) == head(inner) and gpu(cluster) == gpu(inner)
    assert gpu(cluster)["limits"]["nvidia.com/gpu"] == "1"
    for key in ("rayStartParams",):
        assert cluster["workerGroupSpecs"][0][key] == inner["workerGroupSpecs"][0][key]
    assert cluster["workerGroupSpecs"][0]["maxReplicas"] == inner["workerGroupSpecs"][0]["maxReplicas"]
    assert "jobs/translate.py" in job["entrypoint"]


def test_runtime_environments_carry_the_constraints_pins() -> None:
    from importlib import util

    spec = util.spec_from_file_location("lock", REPO / "cluster" / "lock.py")
    lock = util.module_from_spec(spec)
    spec.loader.exec_module(lock)  # type: ignore[union-attr]
    pins = [l for l in (REPO / "constraints.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert any(p.startswith("torch==2.13.0") for p in pins) and len(pins) > 100
    assert yaml.safe_load((REPO / "cluster" / "runtime_env.yaml").read_text())["pip"] == pins
    job = yaml.safe_load((KUBERAY / "rayjob.yaml").read_text())["spec"]
    assert yaml.safe_load(job["runtimeEnvYAML"])["pip"] == pins
    assert lock.pins_in(KUBERAY / "rayjob.yaml") == pins


def test_the_grafana_dashboard_shows_every_metric_the_engine_exports() -> None:
    import json
    import re

    dash = json.loads((REPO / "cluster" / "grafana" / "sarray-dashboard.json").read_text())
    used = {m for p in dash["panels"] for t in p["targets"]
            for m in re.findall(r"ray_(sarray_[a-z_]+?)(?:_bucket)?\{", t["expr"])}
    source = (REPO / "sarray" / "engine" / "metrics.py").read_text()
    exported = set(re.findall(r'(?:Counter|Gauge|Histogram)\("(sarray_[a-z_]+)"', source))
    assert len(exported) == 7 and used == exported
