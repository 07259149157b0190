"""The engine on a three-node Ray cluster on one machine: replicas read and workers write on
nodes other than the driver's, and the output equals a single-node run's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sarray.archive.store import Archive
from sarray.engine.translate import TranslateConfig, translate
from sarray.ingest.config import IngestConfig
from sarray.ingest.run import ingest
from sarray.testing.scenes import speckle_image, write_geotiff

CFG = dict(model="tiny-random", scale=2, chunk_px=64, halo_px=4,
           replica_class="sarray.testing.replicas:SpeckleReplica")



def _same_bits_on_one_node(a: Path, scenes: list[str], out: Path) -> None:
    """Run the same job undisturbed on one local node into ``out``: every scene completes, and
    its output is bit-identical to what the cluster wrote into ``a``."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ref = translate(a, scenes, TranslateConfig(replicas=1, **CFG), out_archive=out, progress=False)
    finally:
        ray.shutdown()
    assert [s.status for s in ref] == ["complete"] * len(scenes)
    for sid in scenes:
        np.testing.assert_array_equal(Archive(a).open_scene(f"{sid}_x2")["backscatter"].values,
                                      Archive(out).open_scene(f"{sid}_x2")["backscatter"].values)

def test_reads_and_writes_run_on_other_nodes_and_match_one_node(tmp_path: Path) -> None:
    import ray
    from ray.cluster_utils import Cluster

    tifs = [write_geotiff(tmp_path / f"m{i}_vv.tif", speckle_image((96, 128), seed=20 + i, looks=4))
            for i in range(2)]
    a = tmp_path / "a.zarr"
    for t in tifs:
        ingest([t], a, IngestConfig(units="linear"))
    scenes = ["m0_vv", "m1_vv"]
    # The driver's node has no CPU slot: every replica and every chunk task runs elsewhere.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=2)
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        driver_node = ray.get_runtime_context().get_node_id()
        # Two writers: the scenes are dealt among them, each merged and committed by its own.
        summaries = translate(a, scenes, TranslateConfig(replicas=2, writers=2, **CFG), progress=False)
        ray.shutdown()
    finally:
        cluster.shutdown()
    assert [s.status for s in summaries] == ["complete", "complete"]
    write_nodes = {w["node"] for s in summaries for w in s.writes}
    read_nodes = {span[1] for s in summaries for span in s.model_spans}
    assert driver_node not in write_nodes | read_nodes
    assert len(write_nodes | read_nodes) == 2  # both worker nodes took part
    assert all(sorted(w["key"] for w in s.writes) == [(i, j) for i in range(3) for j in range(4)]
               for s in summaries)  # every chunk written once (96x128 input, 32-px footprints)
    merged_by = [{w["merged_by"] for w in s.writes} for s in summaries]
    assert all(len(m) == 1 for m in merged_by) and merged_by[0] != merged_by[1]
    # The same job on one local node, with one writer, gives the same pixels.
    _same_bits_on_one_node(a, scenes, tmp_path / "b.zarr")


def test_next_scene_starts_before_the_previous_one_finishes(tmp_path: Path) -> None:
    """One queue for all scenes: the replica goes from scene 1's last tile straight to scene 2's
    first, while scene 1's last chunks are still being written."""
    import ray

    tifs = [write_geotiff(tmp_path / f"q{i}_vv.tif", speckle_image((96, 128), seed=30 + i, looks=4))
            for i in range(2)]
    a = tmp_path / "a.zarr"
    for t in tifs:
        ingest([t], a, IngestConfig(units="linear"))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        cfg = TranslateConfig(**{**CFG, "replica_class": "sarray.testing.replicas:SlowIdentityReplica"})
        first, second = translate(a, ["q0_vv", "q1_vv"], cfg, progress=False)
    finally:
        ray.shutdown()
    last_write_first = max(w["t"] for w in first.writes)
    first_model_second = min(span[2] for span in second.model_spans)
    last_model_first = max(span[3] for span in first.model_spans)
    assert first_model_second < last_write_first
    assert first_model_second - last_model_first < 0.2  # less than one tile's model time idle


def test_a_node_lost_mid_job_the_job_finishes_on_the_others_bit_identical(tmp_path: Path, monkeypatch) -> None:
    """A worker node goes away (``remove_node``, not graceful: a spot preemption) while replicas
    and assemblers run on it. Its replica cannot be restarted (the node left has no spare GPU),
    so the job finishes on the other one: its lost calls and lost predictions are done again,
    its output equals an undisturbed run's bit for bit, every chunk is merged once, and the
    summary line counts the retries."""
    import threading
    import time

    import ray
    from ray.cluster_utils import Cluster

    scenes = [f"n{i}_vv" for i in range(4)]
    a = tmp_path / "a.zarr"
    for i, sid in enumerate(scenes):
        t = write_geotiff(tmp_path / f"{sid}.tif", speckle_image((96, 128), seed=40 + i, looks=4))
        ingest([t], a, IngestConfig(units="linear"))
    mark = tmp_path / "mark"
    monkeypatch.setenv("SARRAY_TEST_MARK_FILE", str(mark))  # inherited by the nodes' workers
    # Fast health checks: the node's end is seen in about a second instead of fifteen. Every
    # prediction in the object store of the node that made it (as a model's megabyte tiles
    # are; these small ones would otherwise travel inline to the driver): the lost node takes
    # predictions with it, and the chunks that needed them are assembled again.
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "_system_config": {"health_check_period_ms": 300,
                                          "health_check_failure_threshold": 3,
                                          "max_direct_call_object_size": 512}})
    removed_at: list[float] = []
    try:
        doomed = cluster.add_node(num_cpus=2, num_gpus=1)  # one fake GPU per node: one replica each
        cluster.add_node(num_cpus=2, num_gpus=1)
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)

        def take_node_away() -> None:
            deadline = time.time() + 120
            while not mark.exists() and time.time() < deadline:
                time.sleep(0.02)
            removed_at.append(time.time())
            cluster.remove_node(doomed, allow_graceful=False)

        killer = threading.Thread(target=take_node_away, daemon=True)
        killer.start()
        cfg = TranslateConfig(replicas=2, **{**CFG, "replica_class":
                                             "sarray.testing.replicas:MarkingSpeckleReplica"})
        summaries = translate(a, scenes, cfg, progress=False)
        killer.join(timeout=5)
        ray.shutdown()
    finally:
        cluster.shutdown()
    assert removed_at, "the replica never marked its progress"
    assert [s.status for s in summaries] == ["complete"] * 4
    # Before the node went, both replicas worked; after it, only the one left.
    spans = [sp for s in summaries for sp in s.model_spans]
    assert len({sp[1] for sp in spans if sp[3] < removed_at[0]}) == 2
    after = {sp[1] for sp in spans if sp[2] > removed_at[0] + 1}
    assert len(after) == 1 and doomed.unique_id not in after
    assert sum(s.retries for s in summaries) > 0
    assert any("retries 0" not in s.line() for s in summaries)
    for s in summaries:  # every chunk merged exactly once
        assert sorted(w["key"] for w in s.writes) == [(i, j) for i in range(3) for j in range(4)]
    # The same job undisturbed, on one local node: the same bits.
    _same_bits_on_one_node(a, scenes, tmp_path / "b.zarr")
