"""Bad input gets a clear error naming rows, columns or files; odd but valid input works."""
import os
import pickle

import numpy as np
import pandas as pd
import pytest

from interp_embed import Dataset
from interp_embed.spec.plan import EncodePlan
from interp_embed.store import StoreError
from numerics import STORED_RTOL, assert_same_latents

pytestmark = pytest.mark.reader


def test_missing_field_lists_the_columns(sae, tmp_path):
    with pytest.raises(KeyError, match=r"'body'.*available columns: \['text', 'date'\]"):
        Dataset(pd.DataFrame({"text": ["a"], "date": ["b"]}), sae=sae, field="body", save_path=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_bad_values_are_listed_by_row(sae, tmp_path):
    df = pd.DataFrame({"text": ["Good morning!", None, "fine", float("nan"), "", "  \n", 42, "\ud800 broken"]})
    with pytest.raises(ValueError) as err:
        Dataset(df, sae=sae, save_path=tmp_path / "x")
    message = str(err.value)
    for row in (1, 3, 4, 5, 6, 7):
        assert f"row {row} " in message
    assert "row 0 " not in message and "row 2 " not in message
    assert "on_error='skip'" in message


def test_skipped_rows_stay_in_the_table_without_activations(sae, tmp_path):
    df = pd.DataFrame({"text": ["Good morning!", None, "Hello there!", ""], "n": [1, 2, 3, 4]})
    ds = Dataset(df, sae=sae, save_path=tmp_path / "x", on_error="skip")
    assert len(ds) == 4 and ds.pandas()["n"].tolist() == [1, 2, 3, 4]
    assert ds.skipped_rows() == {1: "missing (None/NaN)", 3: "empty"}
    np.testing.assert_array_equal(ds.encoded_mask(), [True, False, True, False])
    latents = ds.latents()
    assert latents[1].nnz == 0 and latents[3].nnz == 0 and latents[0].nnz > 0
    with pytest.raises(ValueError, match="row 1 has no activations: missing"):
        ds[1].token_activations(0)
    assert len(ds.filter_na_rows()) == 2
    assert Dataset.load_from_file(ds.path).skipped_rows() == {1: "missing (None/NaN)", 3: "empty"}


def test_duplicate_index_labels_work(sae, tmp_path):
    df = pd.DataFrame({"text": ["Good morning!", "Hello there!", "Good afternoon."]}, index=[7, 7, 3])
    ds = Dataset(df, sae=sae, save_path=tmp_path / "x")
    assert ds.pandas().index.tolist() == [7, 7, 3]
    assert ds[1].document == "Hello there!"
    assert ds[pd.Series([True, False, True], index=[7, 7, 3])].documents() == ["Good morning!", "Good afternoon."]


def test_list_of_dicts_and_wrong_types(sae, tmp_path):
    ds = Dataset([{"text": "Good morning!", "k": 1}], sae=sae, save_path=tmp_path / "x")
    assert ds.list() == [{"text": "Good morning!", "k": 1}]
    with pytest.raises(TypeError, match="DataFrame or a list of dicts"):
        Dataset("just a string", sae=sae)
    with pytest.raises(ValueError, match="on_error"):
        Dataset(pd.DataFrame({"text": ["a"]}), sae=sae, on_error="ignore")


def test_unstorable_column_is_named(sae, tmp_path):
    df = pd.DataFrame({"text": ["Good morning!", "Hi"], "mixed": [{"a": 1}, 3.5]})
    with pytest.raises(ValueError, match="Column 'mixed' cannot be stored"):
        Dataset(df, sae=sae, save_path=tmp_path / "x")


def test_existing_store_is_never_overwritten(encoded, sample, sae):
    before = (encoded.path / "manifest.json").read_bytes()
    with pytest.raises(FileExistsError, match=r"already holds a store\. Open it with Dataset\.load_from_file\(.*\), or pass overwrite=True"):
        Dataset(sample, sae=sae, save_path=encoded.path)
    assert (encoded.path / "manifest.json").read_bytes() == before


def test_documents_longer_than_the_window_keep_every_token(sae, sample, tmp_path):
    long_text = " ".join(sample.text.tolist()[:40])  # ~3,000 real tokens of mixed languages
    df = pd.DataFrame({"text": [long_text, "Good morning!"]})
    windowed = Dataset(df, sae=sae, save_path=tmp_path / "w", plan=EncodePlan(window_tokens=256, window_overlap=32))
    whole = Dataset(df, sae=sae, save_path=tmp_path / "f", plan=EncodePlan(window_tokens=8192, window_overlap=0))
    row, reference = windowed[0], whole[0]
    assert "".join(row.tokens()) == long_text
    n = len(row.tokens())
    assert n == len(sae.load()[0].tokenizer(long_text, add_special_tokens=False)["input_ids"]) and n > 1000
    a, b = row.latents("all").toarray(), reference.latents("all").toarray()
    assert a.shape == b.shape == (n, windowed.d_sae)
    first_window = 256 - len(sae.load()[0].prefix_ids)
    np.testing.assert_allclose(a[:first_window], b[:first_window], atol=0.05, rtol=0.02)
    np.testing.assert_array_equal(windowed.latents("count").toarray()[0], (a > 0).sum(0))
    # The short document was batched beside windows of another size in each store: equal up to rounding.
    assert_same_latents(windowed[1].latents("all").toarray(), whole[1].latents("all").toarray(), STORED_RTOL)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickles_are_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "my_dataset.pkl"
    bad.write_bytes(pickle.dumps({"dataset": _Exploit(marker)}))
    with pytest.raises(StoreError, match="never loaded"):
        Dataset.load_from_file(bad)
    assert not marker.exists()
    with pytest.raises(StoreError, match="not an interp_embed store"):
        Dataset.load_from_file(tmp_path)


def test_where_a_store_is_expected_a_table_or_another_folder_says_what_to_do(sample, tmp_path):
    from synthetic import synthetic_store

    table = tmp_path / "games.csv"
    sample.to_csv(table, index=False)
    with pytest.raises(StoreError, match=r"games\.csv is a table of documents, not an interp_embed store \(a folder "
                                         r"with manifest\.json\): encode it first, e\.g\. Dataset\(table, "
                                         r"save_path='.*games\.iembed'\)"):
        Dataset.load_from_file(table)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError) as err:
        synthetic_store(notes, sample)
    assert "is not an interp_embed store (it holds notes.txt); choose another path" in str(err.value)
    assert "resume" not in str(err.value) and (notes / "notes.txt").read_text() == "mine"
    synthetic_store(tmp_path / "done.iembed", sample)
    with pytest.raises(FileExistsError, match="already holds a store"):
        synthetic_store(tmp_path / "done.iembed", sample)
    synthetic_store(tmp_path / "half.iembed", sample, chunk_chars=1500, encode_chunks=1)
    with pytest.raises(FileExistsError, match=r"Open it with Dataset\.load_from_file\('.*half\.iembed'\) \(resume=True finishes an interrupted run\)") as err:
        synthetic_store(tmp_path / "half.iembed", sample)
    # The same failure in the command line's words, which the command prints: its flags, not Python's arguments.
    assert str(err.value).endswith("or pass overwrite=True to replace it")
    assert err.value.command_line.endswith(f"`interp-embed encode --out {tmp_path / 'half.iembed'} --resume` finishes "
                                           "an interrupted run), or pass --overwrite to replace it")
