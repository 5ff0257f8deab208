"""Highlights mark exactly the tokens whose activation is > 0, in the original text's characters."""
import numpy as np
import pandas as pd
import pytest

from interp_embed import Dataset
from interp_embed.highlight import highlight

from synthetic import token_matrix


def _marked_positions(annotated: str, left="<<", right=">>") -> set[int]:
    """Character positions (in the unmarked text) that lie between markers."""
    marked, pos, inside = set(), 0, False
    i = 0
    while i < len(annotated):
        if annotated.startswith(left, i):
            inside, i = True, i + len(left)
        elif annotated.startswith(right, i):
            inside, i = False, i + len(right)
        else:
            if inside:
                marked.add(pos)
            pos, i = pos + 1, i + 1
    return marked


def test_markers_wrap_exactly_the_active_tokens(synthetic):
    for i in range(0, len(synthetic), 7):
        row = synthetic[i]
        spans = synthetic._store.document(int(synthetic._rows[i])).spans
        dense = token_matrix(row)
        for feature in np.flatnonzero(dense.max(0) > 0)[:5]:
            annotated = row.token_activations(int(feature))
            expected = {c for t in np.flatnonzero(dense[:, feature] > 0)
                        for c in range(*spans[t]) if row.document[spans[t][0]:c + 1].strip()}
            assert _marked_positions(annotated) == expected
            assert annotated.replace("<<", "").replace(">>", "") == row.document


def test_token_list_form(synthetic):
    row = synthetic[0]
    feature = int(row.latents("max").indices[0])
    pairs = row.token_activations(feature, as_string=False)
    assert [p["token"] for p in pairs] == row.tokens()
    np.testing.assert_allclose([p["activation"] for p in pairs], token_matrix(row)[:, feature])


@pytest.mark.reader
def test_unicode_documents_highlight_on_their_own_characters(sae, tmp_path):
    texts = ["Grüße aus Köln 😀 — naïve café", "東京は日本の首都です。", "مرحبا بالعالم", "e\u0301\u200bzero\u200dwidth",
             "tab\tnew\nline  spaces", "<|im_end|> looks special but is text"]
    ds = Dataset(pd.DataFrame({"text": texts}), sae=sae, save_path=tmp_path / "u.iembed")
    for row, text in zip(ds, texts):
        assert "".join(row.tokens()) == text
        feature = int(row.latents("max").indices[0])
        assert row.token_activations(feature).replace("<<", "").replace(">>", "") == text


def test_highlight_keeps_leading_space_outside_and_merges_split_characters():
    text = "Good morning 😀!"
    spans = np.array([[0, 4], [4, 12], [12, 13], [13, 14], [13, 14], [14, 15]])
    active = np.array([False, True, False, True, True, False])
    assert highlight(text, spans, active, "<<", ">>") == "Good <<morning>> <<😀>>!"
