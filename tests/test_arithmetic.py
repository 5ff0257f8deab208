"""The reader's arithmetic (float32 or bfloat16): chosen for the device by ``dtype="auto"``, recorded in the store as
part of its encoder, used again by a resumed run and by Ray workers whatever their processor, and never mixed.

The processor, and what auto would choose, are mocked wherever they matter, so these tests pass on a CPU with
bfloat16 instructions and on one without; a real bfloat16 encoding runs anywhere (torch emulates it where it must)."""
import json
import logging

import pandas as pd
import pytest
from typer.testing import CliRunner

from interp_embed import Dataset
from interp_embed.data import demo_sample
from interp_embed.encode import session
from interp_embed.reading import arithmetic
from interp_embed.reading.arithmetic import choose_arithmetic, cpuinfo_features
from interp_embed.saes import DefaultSAE
from interp_embed.saes import base as saes_base
from interp_embed.spec.plan import EncodePlan
from interp_embed.store import Store

from synthetic import interrupt_after_first_commit

X86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
ARM = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve bf16 i8mm\nCPU implementer\t: 0x41\n"


def machine(monkeypatch, features) -> None:
    """Pretend this processor lists ``features``."""
    monkeypatch.setattr(arithmetic, "cpu_features", lambda: frozenset(features))


def test_cpuinfo_flags_are_read_on_x86_and_arm():
    assert "avx512_bf16" in cpuinfo_features(X86) and "bf16" in cpuinfo_features(ARM)
    assert cpuinfo_features("processor\t: 0\n") == frozenset()


@pytest.mark.parametrize("features", [{"avx2", "avx512_bf16"}, {"amx_bf16"}, {"asimd", "bf16"}, {"avx2"}, set()])
def test_auto_keeps_float32_on_a_cpu_and_says_where_bfloat16_would_be_faster(features, monkeypatch, caplog):
    machine(monkeypatch, features)
    with caplog.at_level(logging.INFO, logger="interp_embed"):
        assert choose_arithmetic("cpu").dtype == "float32"
    flag = arithmetic.native_bfloat16(frozenset(features))
    hint = f"this one multiplies bfloat16 natively ({flag}), so dtype='bfloat16' reads faster"
    assert "Reader arithmetic: float32 (dtype='auto': the reader runs on a CPU" in caplog.text
    assert (hint in caplog.text) == (flag is not None)


def test_auto_takes_bfloat16_on_a_gpu_and_float32_on_other_devices(monkeypatch):
    machine(monkeypatch, set())
    assert choose_arithmetic("cuda:1").dtype == "bfloat16"
    assert choose_arithmetic("mps").dtype == "float32"


def prefer(monkeypatch, dtype: str) -> None:
    """Pretend ``dtype="auto"`` would choose ``dtype`` on this machine."""
    monkeypatch.setattr(saes_base, "choose_arithmetic", lambda device: arithmetic.Choice(dtype, "pretended"))


def test_an_sae_settles_its_arithmetic_once(monkeypatch):
    with pytest.raises(ValueError, match="dtype='float16' is not supported; use one of 'auto', 'float32', 'bfloat16'"):
        DefaultSAE(dtype="float16")
    assert DefaultSAE(dtype="float32").arithmetic() == "float32"
    chosen = DefaultSAE(device="cuda:0")  # nothing is loaded: no GPU is needed to settle it
    assert chosen.arithmetic() == "bfloat16"  # this machine's choice, made once
    chosen.adopt_arithmetic("float32")
    assert chosen.arithmetic() == "bfloat16" and chosen.identity()["reader arithmetic"] == "bfloat16"
    adopting = DefaultSAE(device="cuda:0")
    adopting.adopt_arithmetic("float32")  # a store met first decides
    assert adopting.arithmetic() == "float32"
    explicit = DefaultSAE(dtype="bfloat16")
    explicit.adopt_arithmetic("float32")
    assert explicit.arithmetic() == "bfloat16"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A store made in float32 and one made in bfloat16 (nothing encoded: no model is loaded)."""
    folder = tmp_path_factory.mktemp("arithmetic")
    frame = demo_sample().head(6)
    return {dtype: Dataset(frame, sae=DefaultSAE(dtype=dtype), save_path=folder / f"{dtype}.iembed",
                           compute_activations=False)._store for dtype in ("float32", "bfloat16")}


def _reader_json(store: Store) -> dict:
    return json.loads((store.path / "manifest.json").read_text())["body"]["encoder"]["reader"]


@pytest.mark.reader
def test_a_store_records_its_arithmetic_and_a_float32_store_is_written_as_before(stores):
    assert _reader_json(stores["bfloat16"])["dtype"] == "bfloat16"
    assert "dtype" not in _reader_json(stores["float32"])  # as every store written before arithmetics were recorded
    assert Store.open(stores["float32"].path).encoder.reader.dtype == "float32"
    assert Store.open(stores["bfloat16"].path).encoder.reader.dtype == "bfloat16"
    assert stores["float32"].encoder.differences(stores["bfloat16"].encoder.identity()) == [
        "reader arithmetic 'float32' vs 'bfloat16'"]
    assert "in bfloat16" in stores["bfloat16"].encoder.summary()


@pytest.mark.reader
def test_a_float32_store_refuses_a_bfloat16_resume_by_name(stores, monkeypatch):
    from interp_embed.cli import app

    path = stores["float32"].path
    with pytest.raises(ValueError, match=r"reader arithmetic 'float32' vs 'bfloat16'\); use the SAE it was encoded "
                                         r"with in its arithmetic \(dtype='float32', or 'auto'\)"):
        Dataset.load_from_file(path, resume=True, sae=DefaultSAE(dtype="bfloat16"))
    done = CliRunner().invoke(app, ["encode", "--out", str(path), "--resume", "--dtype", "bfloat16"])
    assert done.exit_code == 1 and "reader arithmetic 'float32' vs 'bfloat16'" in done.output, done.output
    # auto resumes in the store's arithmetic whatever this machine would choose for a new store
    prefer(monkeypatch, "bfloat16")
    assert session.encoder_of(Store.open(path)).arithmetic() == "float32"
    prefer(monkeypatch, "float32")
    assert session.encoder_of(Store.open(stores["bfloat16"].path)).arithmetic() == "bfloat16"


@pytest.mark.reader
def test_a_ray_worker_builds_its_reader_in_the_stores_arithmetic(stores, monkeypatch):
    from interp_embed.encode.distributed import worker_sae

    prefer(monkeypatch, "float32")  # what the worker's node would choose for a new store
    store = stores["bfloat16"]
    sae = worker_sae(store.encoder.source, "cpu", store.encoder.identity(), store.encoder.reader.dtype)
    assert sae.arithmetic() == "bfloat16"
    with pytest.raises(ValueError, match="differs in: reader arithmetic"):
        worker_sae(store.encoder.source, "cpu", store.encoder.identity(), "float32")


@pytest.mark.reader
def test_a_bfloat16_run_resumed_on_another_processor_continues_in_bfloat16(tmp_path, monkeypatch):
    """Interrupted after its first chunk, resumed where auto chooses float32: bit for bit the uninterrupted bfloat16
    run, which differs from a float32 run."""
    import torch

    from interp_embed.reading.reader import Reader

    frame = demo_sample().head(10)
    plan = EncodePlan(chunk_tokens=120)
    reference = Dataset(frame, sae=DefaultSAE(dtype="bfloat16"), save_path=tmp_path / "ref.iembed", plan=plan)
    interrupt_after_first_commit(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        Dataset(frame, sae=DefaultSAE(dtype="bfloat16"), save_path=tmp_path / "cut.iembed", plan=plan)
    prefer(monkeypatch, "float32")
    loaded = []
    init = Reader.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        loaded.append(self.dtype)

    monkeypatch.setattr(Reader, "__init__", spy)
    resumed = Dataset.load_from_file(tmp_path / "cut.iembed", resume=True)
    assert loaded == [torch.bfloat16] and resumed._store.encoder.reader.dtype == "bfloat16"
    assert len(resumed._store.manifest.chunks) > 1
    assert (resumed.latents() != reference.latents()).nnz == 0
    float32 = Dataset(frame, sae=DefaultSAE(dtype="float32"), save_path=tmp_path / "f32.iembed", plan=plan)
    assert (float32.latents() != reference.latents()).nnz > 0
