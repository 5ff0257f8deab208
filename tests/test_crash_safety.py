"""SIGKILL at any point loses at most the chunk in flight; resume=True finishes with identical results."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from interp_embed import Dataset
from interp_embed.data import demo_sample
from interp_embed.spec.plan import EncodePlan

CHUNK_TOKENS = 170  # ~5 documents per chunk: ~24 commits for 120 documents
N_DOCS = 120

SCRIPT = textwrap.dedent(f"""
    import sys
    from interp_embed import Dataset
    from interp_embed.data import demo_sample
    from interp_embed.spec.plan import EncodePlan
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "resume":
        Dataset.load_from_file(path, resume=True)
    else:
        Dataset(demo_sample().head({N_DOCS}), save_path=path, plan=EncodePlan(chunk_tokens={CHUNK_TOKENS}))
""")


def _committed(path: Path) -> int:
    try:
        return len(json.loads((path / "manifest.json").read_text())["body"]["chunks"])
    except (OSError, ValueError, KeyError):
        return 0


def _run_and_kill(path: Path, mode: str, kill_when) -> None:
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, str(path), mode],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while process.poll() is None and not kill_when() and time.monotonic() < deadline:
        time.sleep(0.02)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.slow
@pytest.mark.reader
def test_kill_and_resume_gives_the_uninterrupted_result(sae, tmp_path):
    reference = Dataset(demo_sample().head(N_DOCS), sae=sae, save_path=tmp_path / "ref.iembed",
                        plan=EncodePlan(chunk_tokens=CHUNK_TOKENS))
    total_chunks = _committed(reference.path)
    assert total_chunks > 15

    path = tmp_path / "killed.iembed"
    _run_and_kill(path, "new", lambda: _committed(path) >= 2)
    after_first = _committed(path)
    _run_and_kill(path, "resume", lambda: _committed(path) >= after_first + 8)
    # Third kill mid-flight: just after a commit, while the next chunk is being written. A chunk is in writing for
    # milliseconds, which a loaded machine's polling can miss; two commits later it is killed after a commit instead.
    target = _committed(path) + 5
    _run_and_kill(path, "resume", lambda: _committed(path) >= target + 2 or (
        _committed(path) >= target and bool(list((path / "chunks").glob(".tmp-*")))))
    assert 0 < _committed(path) < total_chunks, "the kills came too late to test anything"

    resumed = Dataset.load_from_file(path, resume=True, sae=sae)
    for name in ("max", "sum", "count", "mean"):
        a, b = resumed.latents(name), reference.latents(name)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert (a != b).nnz == 0, name
    for i in range(0, len(reference), 17):
        assert (resumed[i].latents("all") != reference[i].latents("all")).nnz == 0
        assert resumed[i].tokens() == reference[i].tokens()
    rows = np.concatenate([c.rows for c in resumed._store.chunks()])
    np.testing.assert_array_equal(np.sort(rows), np.arange(len(reference)))  # none twice, none missing
    assert resumed._store.is_complete()
