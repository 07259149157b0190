"""The Ray side of the engine: an actor that holds one replica, and pool sizing.

The replica itself is a plain class (``__init__`` loads, ``__call__(batch) -> batch``); Ray only
wraps it here. Each actor is pinned with ``num_gpus=1`` when the cluster has GPUs, and takes
``num_cpus`` slots (and as many torch threads) otherwise.
"""

from __future__ import annotations

import collections
import heapq
import importlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sarray.errors import ConfigError


def import_object(path: str) -> Any:
    """Import ``"package.module:Name"``."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise ConfigError(f"`replica_class` ({path!r}) must look like 'package.module:ClassName'")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"`replica_class` ({path!r}) cannot be imported: {e}") from None


# Ray disassembles an actor class's code when it exports it (its "collision identifier"), once per
# job and class, in the driver: the classes Ray sees are thin shells over plain classes, so that
# this stays small.


class Assembles:
    """What makes an actor an assembler (:class:`AssemblerPool`): :class:`AssemblerActor`, and
    the replicas themselves when they run on CPUs (see :func:`assembles_in_replicas`)."""

    def where(self) -> tuple[int, str | None]:
        """The imports assembly needs done: (pid, node id)."""
        import ray

        from sarray.engine.work import warm_imports

        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        return warm_imports(), node

    def warm_assembly(self, info_box: list[Any]) -> None:
        from sarray.engine.work import warm_scene

        warm_scene(info_box)

    def assemble(self, info_box: list[Any], keys: list[tuple[int, int]],
                 tile_keys: list[tuple[int, int]], fork: Any, index: list[tuple[int, int]],
                 *batches: Any) -> Any:
        from sarray.engine.work import assemble_chunks, trim_heap

        out = assemble_chunks(info_box, keys, tile_keys, fork, index, *batches)
        trim_heap()
        return out


class ReplicaActor(Assembles):
    """The Ray actor of one replica: a shell over :class:`ReplicaHost`. With CPU replicas it
    assembles chunks too, in a thread of its own (:data:`ASSEMBLY_GROUP`)."""

    def __init__(self, replica_class: str, replica_config: dict[str, Any], threads: int) -> None:
        self.host = ReplicaHost(replica_class, replica_config, threads)

    def ready(self) -> int:
        return self.host.pid

    def warm(self, info_box: list[Any]) -> None:
        from sarray.engine.work import warm_scene

        warm_scene(info_box, inputs=True)

    def predict(self, info_box: list[Any], keys: list[tuple[int, int]]) -> tuple[Any, list[Any]]:
        return self.host.predict(info_box, keys)


class ReplicaHost:
    """Holds one replica in a Ray worker process."""

    def __init__(self, replica_class: str, replica_config: dict[str, Any], threads: int) -> None:
        self.threads = max(1, threads)
        self._set_threads()
        from sarray.models.replica import ReplicaConfig

        self.replica = import_object(replica_class)(ReplicaConfig.from_dict(replica_config))
        import icechunk  # noqa: F401  (the read stack, imported while the model loads)
        import zarr  # noqa: F401

        import sarray.archive.pixels  # noqa: F401
        import sarray.archive.store  # noqa: F401
        import sarray.engine.work  # noqa: F401

        self.pid = os.getpid()
        import ray

        self.node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        # Calls run in two threads (max_concurrency): one reads its tiles while the other's
        # batch is in the model, so reads never sit on the replica's critical path. The model
        # itself runs in one thread of its own, always the same: glibc keeps a malloc arena per
        # thread, and a model called from both call threads in turn kept the freed activations
        # of each in its own arena: peak RSS 916 MiB against 739 MiB with a model thread, the
        # tiny model at 512-px chunks, at the same speed (benchmarks/prof_model_thread.py).
        self._model = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sarray-model")
        self._model.submit(self._set_threads).result()  # the model may have imported torch

    def _set_threads(self) -> None:
        """Torch's intra-op threads, set in the calling thread: the actor's calls run in threads
        of their own (max_concurrency), where OpenMP would otherwise take every core. Only
        when the replica uses torch: a stand-in without it (the fleet benchmark's device-bound
        replicas, 64 to a box) must not pay for its import."""
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(self.threads)

    def _run(self, batch: dict[str, Any]) -> tuple[float, float, Any]:
        """The model on one batch, in the model thread: (start, end, outputs)."""
        import time

        self._set_threads()
        t0 = time.time()
        out = self.replica(batch)["output"]
        return t0, time.time(), out

    def predict(self, info_box: list[Any], keys: list[tuple[int, int]]) -> tuple[Any, list[Any]]:
        """Read the tiles' windows from the archive, translate them; returns ``(ack, [(prediction,
        input window) per tile])``, two objects whatever the batch. The ack (pid, node, model
        start and end times) is all the driver fetches; the call's predictions stay in the
        object store, one object for the batch, for the assembly tasks (one object per call,
        not per tile: the driver, which owns them, and the raylets track half the objects at
        2 tiles per call; ``benchmarks/prof_objects.py``)."""
        from sarray.engine.work import read_tile_batch, scene_info, tile_output

        info = scene_info(info_box)
        batch = read_tile_batch(info, keys)
        t0, t1, out = self._model.submit(self._run, batch).result()
        tiles = [info.plan.tiles[k] for k in keys]
        return ((self.pid, self.node, t0, t1),
                [tile_output(t, x, o, info.spec.scale) for t, x, o in zip(tiles, batch["tiles"], out)])


@dataclass(frozen=True)
class PoolPlan:
    """How many actors, and what each one is pinned to."""

    replicas: int
    num_gpus: float
    num_cpus: float
    torch_threads: int
    device: str


def plan_pool(replicas: int, device: str) -> PoolPlan:
    """Size the pool against the cluster Ray is connected to.

    Args:
        replicas: actors to start.
        device: ``auto`` (GPU when the cluster has one), ``cpu`` or ``cuda``.
    """
    import ray

    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    use_gpu = device == "cuda" or (device == "auto" and gpus >= 1)
    if use_gpu:
        if gpus < replicas:
            raise ConfigError(
                f"`replicas` ({replicas}) exceeds the cluster's {gpus} GPU(s): lower --replicas"
            )
        return PoolPlan(replicas, 1.0, 1.0, 1, "cuda")
    cpus = int(res.get("CPU", 1))
    if replicas > cpus:
        raise ConfigError(
            f"`replicas` ({replicas}) exceeds the cluster's {cpus} CPU slot(s) and it has no GPU: "
            "lower --replicas"
        )
    # Blending and writing run as tasks beside the replicas: leave them one core when there
    # are more cores than replicas.
    per = max(1, (cpus - 1) // replicas) if cpus > replicas else 1
    # With as many replicas as cores, the actors take a little less than a core each, so that
    # the assemblers (ASSEMBLE_NUM_CPUS each) can still be placed.
    n_asm = max(MIN_ASSEMBLERS, replicas)
    slots = min(float(per), (cpus - n_asm * ASSEMBLE_NUM_CPUS) / replicas)
    return PoolPlan(replicas, 0.0, slots, per, "cpu")


# An actor whose call failed as a lost one does (its node gone, its process dead) gets no call
# until it answers a probe (its ``ready()``): the first one PROBE_AFTER_S after the failure,
# and after each failed one the wait doubles, up to PROBE_MAX_S. Ray takes a few health checks
# to see that a node is gone; until then every call to its actors fails at once. Once it has, it
# restarts them where there is room: a probe answers when the actor is back, and never while
# it cannot be placed (no spare GPU on the nodes left), so the job goes on with the others.
PROBE_AFTER_S = 1.0
PROBE_MAX_S = 10.0


def probe(actor: Any) -> Any:
    """A ``ready()`` call that Ray does not retry (a failure comes back at once)."""
    return actor.ready.options(max_task_retries=0).remote()


class Quarantine:
    """The actors of a pool that failed as lost ones do, and their probes (bookkeeping: each
    pool says what a quarantined actor's load counts as)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int]] = []  # heap of (when to probe, actor)
        self._wait: dict[int, float] = {}  # actor in quarantine -> its wait between probes
        self.dead: set[int] = set()  # actors Ray will not restart: never probed again
        self.probes: dict[Any, int] = {}  # probe call -> actor

    def __contains__(self, index: int) -> bool:
        return index in self._wait

    def add(self, index: int, now: float) -> bool:
        """Put actor ``index`` in quarantine (False: it already is)."""
        if index in self._wait:
            return False
        self._wait[index] = PROBE_AFTER_S
        heapq.heappush(self._due, (now + PROBE_AFTER_S, index))
        return True

    def send_probes(self, now: float, actors: list[Any]) -> None:
        """Probe the actors whose wait is over."""
        while self._due and self._due[0][0] <= now:
            index = heapq.heappop(self._due)[1]
            self.probes[probe(actors[index])] = index

    def answered(self, ref: Any, *, ok: bool, dead: bool, now: float) -> int | None:
        """A probe came back: the actor's index if it answered (out of quarantine now); if it
        failed, the next probe waits twice as long (none if the actor is ``dead`` for good)."""
        index = self.probes.pop(ref)
        if ok:
            del self._wait[index]
            return index
        if dead:
            self.dead.add(index)
            return None
        self._wait[index] = min(PROBE_MAX_S, 2 * self._wait[index])
        heapq.heappush(self._due, (now + self._wait[index], index))
        return None

    def next_due(self) -> float | None:
        """When the next probe goes out (None: none waits)."""
        return self._due[0][0] if self._due else None

    def count(self) -> int:
        """Actors in quarantine."""
        return len(self._wait)


# Ray restarts a dead replica (its own fault tolerance): a dying GPU worker costs one model
# load, and the other replicas keep working meanwhile. The calls it held are not retried by Ray
# (the engine's predict and assemble calls say max_task_retries=0): they fail at once and the
# dispatcher sends their work to the actors that are up. The actors' own default (the warm-up
# calls) stays at ACTOR_MAX_TASK_RETRIES.
ACTOR_MAX_RESTARTS = 4
ACTOR_MAX_TASK_RETRIES = 2


_REMOTE: dict[str, Any] = {}


def _remote(obj: Any, **remote: Any) -> Any:
    """``ray.remote(**remote)(obj)``, made once per process (Ray pickles a class at each
    wrapping)."""
    import ray

    key = f"{obj.__module__}.{obj.__qualname__}"
    if key not in _REMOTE:
        _REMOTE[key] = ray.remote(**remote)(obj) if remote else ray.remote(obj)
    return _REMOTE[key]


def start_actor(plan: PoolPlan, replica_class: str, replica_config: dict[str, Any],
                node: str | None = None) -> Any:
    """Start one replica actor (not waited for), on ``node`` if Ray can (see :func:`replica_nodes`)."""
    cls = _remote(ReplicaActor, concurrency_groups={ASSEMBLY_GROUP: 1})
    return cls.options(num_gpus=plan.num_gpus, num_cpus=plan.num_cpus,
                       max_concurrency=2, max_restarts=ACTOR_MAX_RESTARTS,
                       max_task_retries=ACTOR_MAX_TASK_RETRIES, **_on(node)).remote(
        replica_class, {**replica_config, "device": plan.device}, plan.torch_threads
    )


class ActorPool:
    """The replica actors, their slots and backpressure (as Ray Data's actor-pool operator).

    Each actor takes at most ``slots`` calls at a time: one running and the next queued, so a
    replica never waits for its input, and no more tiles are in flight than the pool can use.
    At the job's tail (:meth:`has_slot` with ``queued=False``) a call goes only to an idle
    actor: the last calls then go to whichever replicas free up first, instead of waiting
    behind a busy one while another has nothing left.
    """

    def __init__(self, actors: list[Any], slots: int) -> None:
        self.actors = actors
        self.slots = slots
        self.load = [0] * len(actors)
        # (load, index) of every actor, and stale entries (skipped when on top): the least
        # loaded actor in O(log n) instead of a pass over a fleet's actors at every call.
        self._heap = [(0, i) for i in range(len(actors))]
        self.quarantined = Quarantine()

    def _least(self) -> tuple[int, int]:
        h = self._heap
        while h[0][0] != self.load[h[0][1]]:
            heapq.heappop(h)
        return h[0]

    def has_slot(self, *, queued: bool = True) -> bool:
        """An actor can take a call: one below ``slots`` calls, or (``queued`` False) one idle."""
        return self._least()[0] < (self.slots if queued else 1)

    def pick(self) -> int:
        """The least loaded actor's index, the lowest of equals (call only when :meth:`has_slot`)."""
        return self._least()[1]

    def _set(self, index: int, load: int) -> None:
        self.load[index] = load
        heapq.heappush(self._heap, (load, index))
        if len(self._heap) > 4 * len(self.load) + 64:  # stale entries: rebuild now and then
            self._heap = [(v, i) for i, v in enumerate(self.load)]
            heapq.heapify(self._heap)

    def submit(self, index: int, *args: Any, returns: int = 2) -> list[Any]:
        # Not retried by Ray: a call held by an actor lost with its node fails at once and the
        # dispatcher sends its tiles elsewhere (retried, it would wait for the actor's restart,
        # forever where there is no room for it; so would the lineage reconstruction of its
        # predictions, which Ray does only for calls it may retry).
        self._set(index, self.load[index] + 1)
        refs = self.actors[index].predict.options(num_returns=returns,
                                                  max_task_retries=0).remote(*args)
        return list(refs) if returns > 1 else [refs]

    def release(self, index: int) -> None:
        self._set(index, self.load[index] - 1)

    def quarantine(self, index: int, now: float) -> None:
        """Actor ``index`` failed as a lost actor does (its node gone, or it is restarting):
        give it no call until it answers a probe (it counts as full), so the calls it failed
        go to the others instead of failing on it again."""
        if self.quarantined.add(index, now):
            self._set(index, self.load[index] + self.slots)

    def tick(self, now: float) -> None:
        """Send the probes that are due."""
        self.quarantined.send_probes(now, self.actors)

    def probed(self, ref: Any, *, ok: bool, dead: bool, now: float) -> None:
        """A probe came back (see :meth:`Quarantine.answered`)."""
        index = self.quarantined.answered(ref, ok=ok, dead=dead, now=now)
        if index is not None:
            self._set(index, self.load[index] - self.slots)

    def available(self) -> bool:
        """Some actor is not in quarantine."""
        return self.quarantined.count() < len(self.actors)

    def shutdown(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)


# Assemblers are light (blend + chunk writes): a quarter of a CPU slot each. They are actors,
# not tasks, so that their worker processes (imports, cached scene datasets) live as long as
# the job: Ray stops idle task workers after a second, and a new one costs a process start and
# the imports of xarray, zarr and Icechunk right when the job's last chunks wait for it.
ASSEMBLE_NUM_CPUS = 0.25
# GPU replicas that Ray could not pack onto nodes: at least this many assemblers, and one per
# replica beyond (see assembler_nodes).
MIN_ASSEMBLERS = 2
# The concurrency group of assembly calls in a replica that assembles (assembles_in_replicas):
# one thread, beside the two its predict calls share, so that a chunk never waits behind them.
ASSEMBLY_GROUP = "assembly"


class AssemblerActor(Assembles):
    """Blends and writes chunks (:func:`sarray.engine.work.assemble_chunks`) in a Ray worker of
    its own (GPU replicas: see :func:`assembler_nodes`)."""

    def ready(self) -> tuple[int, str | None]:
        return self.where()


def assembles_in_replicas(plan: PoolPlan) -> bool:
    """Whether the replicas assemble their job's chunks themselves: CPU replicas do, in a
    thread beside the model's (the cores are theirs either way, and an assembler process of
    its own holds its own imports and scene caches: about 100-200 MiB each,
    ``benchmarks/bench_raydata.py``). GPU replicas leave it to assemblers beside them
    (:func:`assembler_nodes`), so that no chunk waits on a replica's host thread."""
    return plan.num_gpus <= 0


# The load a quarantined assembler counts as (far beyond any real backlog).
QUARANTINE_LOAD = 1 << 20

# An assembly call goes to its home assembler while that one has no more than this many calls
# beyond the least loaded (see AssemblerPool.remote).
HOME_SLACK_CALLS = 1
# A call goes to an assembler on the node that made its predictions (they are in that node's
# object store: no copy between nodes) while that one has no more than this many calls beyond
# the least loaded of all.
NODE_SLACK_CALLS = 4
# GPU replicas per assembler on a node (at least one per node that holds replicas): at a few
# seconds per tile, one assembler (tens of ms per chunk) keeps up with several GPUs.
GPU_REPLICAS_PER_ASSEMBLER = 4


def replica_nodes(plan: PoolPlan) -> list[str | None]:
    """The node each replica is asked to go to: GPU replicas packed onto the nodes with the
    most GPUs (so that each node's assemblers serve as many of them as they can); None for
    CPU replicas (Ray places them). The request is soft: Ray places a replica elsewhere when
    its node has no room (and where it can when the node is lost)."""
    if plan.num_gpus <= 0:
        return [None] * plan.replicas
    import ray

    nodes = sorted(((n["Resources"].get("GPU", 0), n["NodeID"]) for n in ray.nodes()
                    if n.get("Alive") and n["Resources"].get("GPU", 0) >= 1),
                   key=lambda x: (-x[0], x[1]))
    out: list[str | None] = []
    for gpus, node in nodes:
        out += [node] * min(int(gpus), plan.replicas - len(out))
    return out + [None] * (plan.replicas - len(out))


def assembler_nodes(plan: PoolPlan, nodes: list[str | None]) -> list[str | None]:
    """Where the job's assemblers go (GPU replicas; CPU replicas assemble themselves, see
    :func:`assembles_in_replicas`): one per :data:`GPU_REPLICAS_PER_ASSEMBLER` replicas of
    each node, on that node; where some replica has no node of its own, one per replica and at
    least :data:`MIN_ASSEMBLERS`, placed by Ray."""
    if plan.num_gpus <= 0 or any(n is None for n in nodes):
        return [None] * max(MIN_ASSEMBLERS, plan.replicas)
    per_node = collections.Counter(nodes)
    return [n for n, k in per_node.items() for _ in range(-(-k // GPU_REPLICAS_PER_ASSEMBLER))]


def _on(node: str | None) -> dict[str, Any]:
    """Ray options for a soft request to run on ``node`` (none for None)."""
    if node is None:
        return {}
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=True)}


class AssemblerPool:
    """The job's assemblers. A call goes to its home assembler when it has one (the same for
    the same columns of every chunk row: the band cells between two rows are blended once, in
    that assembler's cell cache, instead of once in each of two) unless that one is behind;
    otherwise to the one with the fewest calls in flight."""

    def __init__(self, n: int, actors: list[Any] | None = None,
                 nodes: list[str | None] | None = None, group: str | None = None) -> None:
        # group: the actors are the replicas (assembles_in_replicas), their calls go to that
        # concurrency group, and the replicas' pool stops them.
        self._call = {"concurrency_group": group} if group else {}
        self.owned = actors is None
        if actors is None:
            cls = _remote(AssemblerActor)
            nodes = nodes if nodes is not None else [None] * n
            actors = [cls.options(num_cpus=ASSEMBLE_NUM_CPUS, max_restarts=ACTOR_MAX_RESTARTS,
                                  max_task_retries=ACTOR_MAX_TASK_RETRIES, **_on(node)).remote()
                      for node in nodes]
        self.actors = actors  # given: stand-ins (the simulated fleet of bench_plan.py)
        self.load = [0] * len(actors)
        self.by_node: dict[Any, list[int]] = {}  # node -> its assemblers (see learn_nodes)
        self._owner: dict[Any, int] = {}
        self._next = 0
        self.quarantined = Quarantine()
        self.ran_on: dict[Any, int] = {}  # finished call -> its assembler, until forgotten

    def ready(self) -> list[Any]:
        """Refs of each assembler's (pid, node): give their values to :meth:`learn_nodes`."""
        return [a.where.options(**self._call).remote() for a in self.actors]

    def learn_nodes(self, answers: list[tuple[int, Any]]) -> None:
        """Where each assembler runs (the answers of :meth:`ready`, in order). An assembler
        Ray restarts elsewhere after its node is lost stays filed under the old node, which
        makes no call of that node's predictions, which are gone with it."""
        self.by_node = {}
        for i, (_, node) in enumerate(answers):
            if node is not None:
                self.by_node.setdefault(node, []).append(i)

    def warm(self, info_box: list[Any]) -> list[Any]:
        """Every assembler opens the scene it will see first (queued behind its imports):
        the refs to wait for, so that no assembler is still opening it while the first tiles
        run."""
        return [a.warm_assembly.options(**self._call).remote(info_box) for a in self.actors]

    def remote(self, *args: Any, home: int | None = None, node: Any = None) -> Any:
        """Send one assembly call: to an assembler on ``node`` (the one that made most of its
        predictions) while it has at most :data:`NODE_SLACK_CALLS` calls more than the least
        loaded of all (``home`` picks among that node's, else its least loaded); otherwise to
        assembler ``home`` (modulo their number) while it has at most
        :data:`HOME_SLACK_CALLS` calls more than the least loaded, otherwise to the least
        loaded (ties in turn)."""
        n = len(self.actors)
        least = min(((self._next + k) % n for k in range(n)), key=self.load.__getitem__)
        i = least
        local = self.by_node.get(node) if node is not None else None
        if local:
            j = (local[home % len(local)] if home is not None
                 and self.load[local[home % len(local)]] <= min(self.load[x] for x in local) + HOME_SLACK_CALLS
                 else min(local, key=self.load.__getitem__))
            i = j if self.load[j] <= self.load[least] + NODE_SLACK_CALLS else least
            if i == least:
                self._next = (i + 1) % n
        elif home is not None and self.load[home % n] <= self.load[least] + HOME_SLACK_CALLS:
            i = home % n
        else:
            self._next = (i + 1) % n
        ref = self.actors[i].assemble.options(max_task_retries=0, **self._call).remote(*args)  # as predict's
        self.load[i] += 1
        self._owner[ref] = i
        return ref

    def done(self, ref: Any) -> None:
        i = self._owner.pop(ref)
        self.load[i] -= 1
        self.ran_on[ref] = i

    def forget(self, ref: Any) -> int | None:
        """The assembler a finished call ran on (None once forgotten)."""
        return self.ran_on.pop(ref, None)

    def quarantine(self, index: int, now: float) -> None:
        """As :meth:`ActorPool.quarantine`: no call until it answers a probe (it looks far
        behind, so neither home nor least loaded)."""
        if self.quarantined.add(index, now):
            self.load[index] += QUARANTINE_LOAD

    def tick(self, now: float) -> None:
        """Send the probes that are due."""
        self.quarantined.send_probes(now, self.actors)

    def probed(self, ref: Any, *, ok: bool, dead: bool, now: float) -> None:
        """A probe came back (see :meth:`Quarantine.answered`)."""
        index = self.quarantined.answered(ref, ok=ok, dead=dead, now=now)
        if index is not None:
            self.load[index] -= QUARANTINE_LOAD

    def available(self) -> bool:
        """Some assembler is not in quarantine (else ready chunks wait for one)."""
        return self.quarantined.count() < len(self.actors)

    def shutdown(self) -> None:
        import ray

        for a in self.actors if self.owned else ():
            ray.kill(a)


def start_writer(archive_url: str, out_url: str, config: dict[str, Any],
                 provenance_base: dict[str, Any]) -> Any:
    """The job's :class:`~sarray.engine.output.OutputWriter` actor (metadata only: no CPU slot).

    It is placed on the driver's node: merges and commits are small, and the archive's local
    commit guard (a lock file) must be on the machine that holds a local archive.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    return _remote(OutputWriterActor).options(
        num_cpus=0, max_restarts=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
    ).remote(archive_url, out_url, config, provenance_base)


class OutputWriterActor:
    """The Ray actor of the job's :class:`~sarray.engine.output.OutputWriter` (a shell)."""

    def __init__(self, *args: Any) -> None:
        from sarray.engine.output import OutputWriter

        self.w = OutputWriter(*args)

    def prepare(self, sid: str) -> Any:
        return self.w.prepare(sid)

    def fork(self, out_id: str) -> Any:
        return self.w.fork(out_id)

    def merge_many(self, out_id: str, *assembled: Any) -> list[dict[str, Any]]:
        return self.w.merge_many(out_id, *assembled)

    def finish(self, out_id: str) -> str:
        return self.w.finish(out_id)

    def flush_all(self) -> None:
        self.w.flush_all()
