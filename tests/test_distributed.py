"""Encoding on Ray (encode/distributed.py), on a two-CPU Ray instance this test starts on 127.0.0.1: two workers
write exactly the store a single process writes — chunk for chunk, byte for byte — even when a worker is killed
mid-run (SIGKILL), and when the driver is killed and the run resumed. Real text (the bundled fortunes), the bundled reader and SAE."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from interp_embed import Dataset
from interp_embed.encode.distributed import WORKER_NAME, RayEngine, WorkerPlan, engine_for, plan_workers
from interp_embed.spec.plan import EncodePlan
from interp_embed.store import Store

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.reader, pytest.mark.slow]

WAIT = 240  # seconds any step may take on a busy two-core machine before the test gives up


@pytest.fixture(scope="module")
def single(sample, sae, tmp_path_factory) -> Dataset:
    """The bundled fortunes encoded in this process, in 5 chunks: what every Ray run must reproduce, byte for byte.

    Encoded with one torch thread, as each worker of the two-CPU test cluster runs: a CPU's BLAS may round a matrix
    product differently with another number of threads, and the promise is the same bytes from the same
    arithmetic."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        done = Dataset(sample, sae=sae, save_path=tmp_path_factory.mktemp("single") / "single.iembed",
                       plan=EncodePlan(chunk_tokens=500))
    finally:
        torch.set_num_threads(threads)
    assert len(done._store.manifest.chunks) == 5
    return done


@pytest.fixture(scope="module")
def cluster():
    """A Ray instance with two CPUs on 127.0.0.1; runs in this process join it, a driver in another by address."""
    assert not ray.is_initialized()
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def assert_same_store(path, single: Dataset):
    """The store at ``path`` holds exactly what the single process wrote: the same committed chunks with files of
    the same checksums (every token's ids, spans and activations, every pooled value), and no other chunk."""
    store = Store.open(path)
    assert store.is_complete()
    assert store.manifest.chunks == single._store.manifest.chunks
    committed = {c.name for c in store.manifest.chunks}
    assert {p.name for p in (store.path / "chunks").iterdir() if not p.name.startswith(".tmp-")} == committed
    done = Dataset.load_from_file(path)
    for aggregation in ("max", "sum", "count"):
        assert (done.latents(aggregation) != single.latents(aggregation)).nnz == 0
    row = int(np.argmax([len(t) for t in single.documents()]))
    assert np.array_equal(done[row].latents("all").toarray(), single[row].latents("all").toarray())


def wait_for(condition, what: str):
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def committed(path) -> int:
    try:
        return len(Store.open(path).manifest.chunks)
    except Exception:  # the store is not created yet
        return 0


def test_a_worker_killed_mid_run_changes_nothing(sample, sae, single, cluster, tmp_path):
    path, failure = tmp_path / "killed-worker.iembed", []

    def encode():
        try:
            Dataset(sample, sae=sae, save_path=path, plan=single._store.plan, engine="ray", num_workers=2)
        except BaseException as err:  # reported by the test's thread
            failure.append(err)

    run = threading.Thread(target=encode)
    run.start()
    wait_for(lambda: committed(path) >= 1 or failure, "the first commit")
    assert not failure, failure
    [name, *_] = sorted(a for a in ray.util.list_named_actors() if a.startswith(WORKER_NAME))
    worker = ray.get_actor(name)
    pid = ray.get(worker.where.options(concurrency_group="status").remote())["pid"]
    os.kill(pid, signal.SIGKILL)
    assert committed(path) < 5  # killed while it still had chunks to encode
    run.join(WAIT)
    assert not run.is_alive() and not failure, failure
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert_same_store(path, single)
    assert not [a for a in ray.util.list_named_actors() if a.startswith(WORKER_NAME)]  # workers are stopped after


def test_a_killed_driver_is_resumed(sample, sae, single, cluster, tmp_path):
    path = tmp_path / "killed-driver.iembed"
    Dataset(sample, sae=sae, save_path=path, plan=single._store.plan, compute_activations=False)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    # The driver: the command line in a process of its own, joining the test's Ray instance with two workers of one
    # CPU (one torch thread) each, as the resumed run and the single process encode.
    command = ["encode", "--out", str(path), "--resume", "--engine", "ray", "--workers", "2", "--address", cluster]
    log = tmp_path / "driver.log"
    with open(log, "wb") as output:
        driver = subprocess.Popen([sys.executable, "-m", "interp_embed", *command], env=env, stdout=output,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: committed(path) >= 1 or driver.poll() is not None, "the driver's first commit")
        assert driver.poll() is None, log.read_text()[-3000:]
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and anything it started
        driver.wait(WAIT)
    done_before = committed(path)
    assert 1 <= done_before < 5
    # Ray stops the workers of a driver that died, which frees the cluster's two CPUs for the resumed run.
    wait_for(lambda: ray.available_resources().get("CPU", 0) >= 2, "the dead driver's workers to stop")
    resumed = Dataset.load_from_file(path, resume=True, engine="ray", num_workers=2)
    assert resumed._store.is_complete()
    assert_same_store(path, single)


def test_engine_settings_are_checked_at_the_door(sample, sae, tmp_path):
    with pytest.raises(ValueError, match="engine must be 'local' .* or 'ray' .*, not 'spark'"):
        Dataset(sample, sae=sae, save_path=tmp_path / "a.iembed", engine="spark")
    with pytest.raises(ValueError, match="num_workers and ray_address are settings of engine='ray'"):
        Dataset(sample, sae=sae, save_path=tmp_path / "b.iembed", num_workers=2)
    with pytest.raises(ValueError, match="num_workers must be an integer >= 1, not 0"):
        engine_for("ray", 0, None)
    with pytest.raises(ValueError, match="ray_address must be a Ray cluster address"):
        engine_for("ray", 2, " ")
    assert engine_for("ray", 3, "auto") == RayEngine(3, "auto") and engine_for("local", None, None) is None
    assert not (tmp_path / "a.iembed").exists() and not (tmp_path / "b.iembed").exists()


def test_more_workers_than_the_cluster_holds_are_refused(sample, sae, cluster, tmp_path):
    with pytest.raises(ValueError, match="num_workers=3 but the Ray cluster has 2 CPUs: give num_workers=2 or less"):
        Dataset(sample, sae=sae, save_path=tmp_path / "c.iembed", engine="ray", num_workers=3)
    with pytest.raises(ValueError, match="the Ray cluster has no GPU, so give num_workers="):
        Dataset.load_from_file(tmp_path / "c.iembed", resume=True, engine="ray")


def test_workers_take_a_gpu_each_or_a_share_of_the_cpus():
    gpu_cluster = {"GPU": 4.0, "CPU": 64.0}
    assert plan_workers(gpu_cluster, None, None, 100) == WorkerPlan(4, True, {"num_gpus": 1, "num_cpus": 1})
    assert plan_workers(gpu_cluster, "cuda", 2, 100) == WorkerPlan(2, True, {"num_gpus": 1, "num_cpus": 1})
    assert plan_workers(gpu_cluster, None, None, 3).count == 3  # no more workers than chunks
    assert plan_workers(gpu_cluster, "cpu", 8, 100) == WorkerPlan(8, False, {"num_cpus": 8})
    assert plan_workers({"CPU": 2.0}, None, 2, 5) == WorkerPlan(2, False, {"num_cpus": 1})
    assert plan_workers({"CPU": 16.0}, None, 4, 2) == WorkerPlan(2, False, {"num_cpus": 8})
    with pytest.raises(ValueError, match="num_workers=5 but the Ray cluster has 4 GPUs: give num_workers=4 or less"):
        plan_workers(gpu_cluster, None, 5, 100)
    with pytest.raises(ValueError, match=r"the Ray cluster has no GPU, so give num_workers= \(it has 2 CPUs\)"):
        plan_workers({"CPU": 2.0}, None, None, 5)


def test_a_chunk_another_process_wrote_is_committed_only_as_it_was_written(sample, tmp_path):
    """What the driver does with a worker's result, without Ray: parse the entry, check every file, commit."""
    from interp_embed.store import ChunkEntry, StoreCorruptError
    from interp_embed.store.chunk import write_chunk
    from synthetic import D_SAE, encode_text, synthetic_store

    store = synthetic_store(tmp_path / "s.iembed", sample, encode_chunks=0)
    texts = sample["text"].tolist()
    (a, b), (c, d) = store.pending_chunks()[:2]
    with store.writing():  # taken before the workers write: taking it removes chunk folders not committed
        written = [write_chunk(store.path / "chunks", start, stop, [encode_text(texts[r], r) for r in range(start, stop)],
                               D_SAE).to_json() for start, stop in ((a, b), (c, d))]
        first, second = (ChunkEntry.from_json(entry) for entry in written)
        values = store.path / "chunks" / second.name / "act_values.npy"
        values.write_bytes(values.read_bytes()[:-2] + b"\0\0")  # a rerun or a stale worker left other bytes
        store.commit_written_chunk(first)
        with pytest.raises(StoreCorruptError, match="act_values.npy does not match its checksum"):
            store.commit_written_chunk(second)
        without_one = ChunkEntry.from_json({**written[1], "files": {k: v for k, v in written[1]["files"].items()
                                                                   if k != "pool_max.npy"}})
        with pytest.raises(StoreCorruptError, match=f"chunk {second.name} lists files"):
            store.commit_written_chunk(without_one)
    with pytest.raises(TypeError, match="n_tokens should be int"):
        ChunkEntry.from_json({**written[0], "n_tokens": "12"})
    with pytest.raises(RuntimeError, match="needs the writer lock"):
        store.commit_written_chunk(first)
    reopened = Store.open(store.path)
    assert [(e.start, e.stop) for e in reopened.manifest.chunks] == [(a, b)]
    assert reopened.document(a).token_ids.tolist() == encode_text(texts[a], a).token_ids.tolist()
