"""Encoding on a Ray cluster: the store's chunk plan is the unit of work; Ray workers encode and write chunks,
and this process (the driver) alone commits them.

Each worker (a Ray actor: one per GPU when the cluster has GPUs, else an equal share of its CPUs) loads the reader
and the SAE once, encodes whole chunks of the store's plan — the batches a single process would run, so the
activations are the same — and writes each chunk into the store's ``chunks/`` folder under the chunk's own name,
atomically (built under a temporary name, then renamed). It returns the chunk's manifest entry as JSON; the
driver, which holds the store's writer lock, checks every file against that entry and commits it, in whatever
order chunks finish.

What a failure costs: a worker that dies (killed, out of memory, its node lost) is restarted by Ray and the chunks
it held are encoded again; a rerun rewrites the same folder, and a half-written folder never gets the chunk's name.
Only the driver writes the manifest, once per chunk. If the driver dies, the chunk folders written but not
committed are removed as leftovers by the next writer, and ``resume=True`` encodes those chunks again (at most
``CHUNKS_PER_WORKER`` per worker).

On a cluster of several machines the store's folder must be at the same path on every node (a shared file
system), and every node needs interp_embed and the files of its reader and SAE.

Importing this module imports neither Ray nor torch: the driver imports Ray when it runs, a worker torch.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..files import CHUNKS
from ..saes import sae_from_spec
from ..saes.base import SAE, Device, split_device
from ..spec.plan import EncodePlan
from ..store import ChunkEntry, Store, StoreError
from ..store.chunk import write_chunk
from ..validation import Int, OrNone, validate_fields

logger = logging.getLogger(__name__)

ENGINES = ("local", "ray")
WORKER_NAME = "interp_embed-encoder"
"""Ray name prefix of the workers (``ray list actors`` shows them)."""
RESTARTS = 3
"""Times Ray restarts a worker that died, and encodes again a chunk it held, before the run stops with the error."""
CHUNKS_PER_WORKER = 2
"""Chunks queued on a worker at once: the next one is already there when one finishes, so a worker never waits
for the driver, and a faster worker still takes more of the chunks left."""


@dataclass(frozen=True)
class RayEngine:
    """Where and how wide to encode with Ray."""

    num_workers: int | None = None
    """Workers encoding at once, each with its own reader and SAE. None: one per GPU of the cluster (a cluster
    without GPUs needs a number)."""
    address: str | None = None
    """The Ray cluster to join (``"auto"``, ``"10.0.0.5:6379"``, ``"ray://head:10001"``). None starts Ray on this
    machine for the run, with its CPUs and GPUs, and stops it after. A process that already called ``ray.init``
    keeps the cluster it joined."""

    def __post_init__(self) -> None:
        validate_fields(self, num_workers=OrNone(Int(min=1)))
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise ValueError(f"ray_address must be a Ray cluster address such as 'auto' or '10.0.0.5:6379', or None "
                             f"to start Ray on this machine, not {self.address!r}")


def engine_for(engine: str, num_workers: int | None, ray_address: str | None) -> RayEngine | None:
    """The Ray settings that ``engine="ray"`` asks for, or None for ``engine="local"`` (this process encodes)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be 'local' (encode in this process) or 'ray' (encode on Ray workers), "
                         f"not {engine!r}")
    if engine == "local":
        if num_workers is not None or ray_address is not None:
            raise ValueError("num_workers and ray_address are settings of engine='ray'; pass engine='ray' as well")
        return None
    if importlib.util.find_spec("ray") is None:
        raise ImportError("engine='ray' needs Ray, which is not installed: pip install 'interp_embed[ray]'")
    return RayEngine(num_workers, ray_address)


class ChunkWorker:
    """What a Ray worker holds: the reader and the SAE, loaded once, and the encoder that runs them over chunks."""

    def __init__(self, sae_source: dict, device: Device, plan: dict, identity: dict, arithmetic: str):
        import ray
        import torch

        from .pipeline import Encoder

        # Ray gives each worker its share of the CPUs; more torch threads than that would fight the other workers.
        torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
        reader, model, sae_device = worker_sae(sae_source, device, identity, arithmetic).load()
        self.device = str(reader.device)
        self.encoder = Encoder(reader, model, EncodePlan.from_json(plan), sae_device)
        self.d_sae = model.cfg.d_sae

    def where(self) -> dict:
        """The worker's process id, node address and device."""
        import ray

        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address(), "device": self.device}

    def encode_chunk(self, chunks_folder: str, start: int, stop: int, rows: list[int], texts: list[str]) -> dict:
        """Encode ``rows`` (those of [start, stop) that are not skipped), write their chunk into ``chunks_folder``
        and return its manifest entry as JSON."""
        docs = self.encoder.encode_rows(rows, texts)
        return write_chunk(Path(chunks_folder), start, stop, docs, self.d_sae, self.encoder.plan.token_level).to_json()


def worker_sae(sae_source: dict, device: Device, identity: dict, arithmetic: str) -> SAE:
    """The SAE a worker rebuilds from the store's record, running its reader in the store's ``arithmetic`` whatever
    this node's processor would choose; a ValueError if this node's files make another encoder than ``identity``."""
    sae = sae_from_spec(sae_source, device)
    sae.adopt_arithmetic(arithmetic)
    mine = sae.identity()
    differing = [key for key in identity if identity[key] != mine.get(key)]
    if differing:  # another node may hold other files under the same path
        raise ValueError(f"{sae!r} on this node is not the encoder the store records (differs in: "
                         f"{', '.join(differing)}); every node needs the same reader and SAE files")
    return sae


def encode_on_ray(store: Store, sae: SAE, engine: RayEngine) -> None:
    """Encode the store's pending chunks on Ray workers, committing each as it arrives (the caller holds the
    store's writer lock)."""
    todo = store.pending_chunks()
    if not todo:
        return
    import ray

    joined_here = not ray.is_initialized()
    if joined_here:
        if engine.address is None:
            ray.init(address="local", include_dashboard=False)
        else:
            ray.init(address=engine.address)
    workers = []
    try:
        workers = _start_workers(ray, store, sae, engine, len(todo))
        _encode_chunks(ray, store, workers, todo)
    finally:
        for worker in workers:
            ray.kill(worker)
        if joined_here:
            ray.shutdown()


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers a run starts and what each asks Ray for."""

    count: int
    """Workers started: the number asked for (or one per GPU), never more than there are chunks to encode."""
    on_gpu: bool
    """Whether each worker takes a GPU of its own (the cluster has GPUs and the SAE's device does not say CPU)."""
    resources: dict
    """What each worker reserves: ``num_gpus=1`` (and one CPU) on a GPU, else an equal share of the CPUs, all
    of which its torch threads use."""


def plan_workers(cluster: dict, device: Device, num_workers: int | None, n_chunks: int) -> WorkerPlan:
    """The workers to start on a cluster with ``cluster`` resources (``ray.cluster_resources()``) for an SAE on
    ``device``; a ValueError when the cluster cannot hold them."""
    gpus, cpus = int(cluster.get("GPU", 0)), int(cluster.get("CPU", 0))
    on_gpu = gpus > 0 and all(d is None or str(d).startswith("cuda") for d in split_device(device))
    wanted = num_workers or (gpus if on_gpu else None)
    if wanted is None:
        raise ValueError(f"the Ray cluster has no GPU, so give num_workers= (it has {cpus} CPUs)")
    slots = gpus if on_gpu else cpus
    if wanted > slots:
        raise ValueError(f"num_workers={wanted} but the Ray cluster has {slots} {'GPUs' if on_gpu else 'CPUs'}: "
                         f"give num_workers={slots} or less, or add nodes")
    count = min(wanted, n_chunks)
    return WorkerPlan(count, on_gpu, {"num_gpus": 1, "num_cpus": 1} if on_gpu else {"num_cpus": max(1, cpus // count)})


def _start_workers(ray, store: Store, sae: SAE, engine: RayEngine, n_chunks: int) -> list:
    """Start the workers and wait until each has loaded its models."""
    if store.encoder.source is None:
        raise StoreError(f"{store.path} does not record which SAE encoded it, so no worker can rebuild it")
    plan = plan_workers(ray.cluster_resources(), sae.device, engine.num_workers, n_chunks)
    actor = ray.remote(max_restarts=RESTARTS, max_task_retries=RESTARTS, concurrency_groups={"status": 1})(ChunkWorker)
    run = uuid.uuid4().hex[:8]
    # A worker on a GPU sees that GPU alone (Ray sets CUDA_VISIBLE_DEVICES), so it takes the default device.
    args = (store.encoder.source, None if plan.on_gpu else sae.device, store.plan.to_json(), store.encoder.identity(),
            store.encoder.reader.dtype)
    workers = [actor.options(name=f"{WORKER_NAME}-{run}-{i}", **plan.resources).remote(*args) for i in range(plan.count)]
    for i, place in enumerate(ray.get([w.where.options(concurrency_group="status").remote() for w in workers])):
        logger.info("Ray worker %d: process %d on %s (%s)", i, place["pid"], place["node"], place["device"])
    return workers


def _encode_chunks(ray, store: Store, workers: list, todo: list[tuple[int, int]]) -> None:
    """Hand chunks to the workers and commit each chunk as it comes back, in any order, then give its worker the
    next one."""
    from .pipeline import advance_bar

    skipped = store.skipped
    folder = str((store.path / CHUNKS).resolve())  # a worker's working folder may be another
    queue, in_flight = deque(todo), {}

    def give(worker) -> None:
        start, stop = queue.popleft()
        texts = store.texts(start, stop)  # only this chunk's rows: the table may not fit in memory
        rows = [r for r in range(start, stop) if r not in skipped]
        in_flight[worker.encode_chunk.remote(folder, start, stop, rows, [texts[r - start] for r in rows])] = (
            worker, start, stop, len(rows))

    for _ in range(CHUNKS_PER_WORKER):
        for worker in workers:
            if queue:
                give(worker)
    n_docs, tokens, started = sum(b - a for a, b in todo), 0, time.perf_counter()
    with tqdm(total=n_docs, unit="doc", desc=f"Encoding on {len(workers)} Ray worker{'s' * (len(workers) > 1)}",
              dynamic_ncols=True, mininterval=1.0) as bar:
        while in_flight:
            [ready], _ = ray.wait(list(in_flight), num_returns=1)
            worker, start, stop, n_rows = in_flight.pop(ready)
            entry = ChunkEntry.from_json(ray.get(ready))
            if (entry.start, entry.stop, entry.n_encoded) != (start, stop, n_rows):
                raise StoreError(f"a Ray worker returned chunk {entry.name} with {entry.n_encoded} encoded rows for "
                                 f"rows [{start}, {stop}) with {n_rows} to encode; it was not committed")
            store.commit_written_chunk(entry)
            tokens += entry.n_tokens
            advance_bar(bar, stop - start, tokens, started)
            if queue:
                give(worker)
    logger.info("Encoded %d rows (%d document tokens) on %d Ray workers into %s", n_docs, tokens, len(workers),
                store.path)
