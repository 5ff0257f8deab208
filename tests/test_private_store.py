"""Code outside dataset.py and store/ reaches a dataset's store through ``Dataset.stored`` only."""
import re
from pathlib import Path

import interp_embed

PACKAGE = Path(interp_embed.__file__).parent


def test_nothing_outside_the_dataset_and_the_store_touches_a_private_store():
    private = re.compile(r"\b_store\b")
    outside = [path for path in PACKAGE.rglob("*.py")
               if path.name != "dataset.py" or path.parent != PACKAGE]
    outside = [path for path in outside if path.parent.name != "store"]
    found = [f"{path.relative_to(PACKAGE)}:{n}" for path in outside
             for n, line in enumerate(path.read_text().splitlines(), 1) if private.search(line)]
    assert found == []


def test_the_stored_rows_of_a_view_are_its_rows_in_the_store(synthetic):
    view = synthetic[[3, 0, 3]]
    stored = view.stored
    assert stored.rows.tolist() == view.store_rows.tolist() and stored.n_documents == len(synthetic)
    limit = 10**9  # far more than the store: one chunk per block
    on_disk = stored.latents_on_disk("max", limit)
    assert (on_disk != synthetic.latents("max")[[3, 0, 3]]).nnz == 0
    assert stored.encoded_positions(limit).tolist() == [i for i in range(3) if view.encoded_mask()[i]]
    whole = synthetic.stored.n_tokens()
    assert whole.sum() == sum(c.n_tokens for c in synthetic._store.manifest.chunks) > 0
    assert stored.n_tokens().tolist() == whole[[3, 0, 3]].tolist()
    assert (whole > 0).tolist() == synthetic.encoded_mask().tolist()
