"""Token reductions of (batch, tokens, dim) outputs against the same rows picked or averaged by
hand, the attention mask, and the refusals (avgpool on tokens, token choices on maps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from manifold_probe.errors import InputError
from manifold_probe.extraction.engine import extract
from manifold_probe.extraction.reductions import (
    Reduction,
    make_reducer,
    output_kind,
    parse_reduction,
)


def _tokens(n=4, t=5, d=3, seed=0):
    return torch.randn(n, t, d, generator=torch.Generator().manual_seed(seed))


# right padding in rows 0 and 2, left padding in row 1, none in row 3
MASK = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]])


def test_output_kinds():
    assert output_kind((10,)) == "vector" and output_kind(()) == "vector"
    assert output_kind((197, 64)) == "token sequence"
    assert output_kind((3, 8, 8)) == "spatial map" and output_kind((3, 2, 8, 8)) == "spatial map"


def test_cls_token_and_flatten_pick_by_hand():
    x = _tokens()
    reduce = lambda spec: make_reducer(parse_reduction(spec), (5, 3), layer="l")(x, MASK)  # noqa: E731
    np.testing.assert_array_equal(reduce("cls"), x[:, 0])
    np.testing.assert_array_equal(reduce("token:2"), x[:, 2])
    np.testing.assert_array_equal(reduce("token:-1"), x[:, 4])
    np.testing.assert_array_equal(reduce("flatten"), x.reshape(4, 15))
    assert parse_reduction("token:3").n_features((5, 3)) == 3
    with pytest.raises(InputError, match="has 5 tokens"):
        make_reducer(parse_reduction("token:5"), (5, 3), layer="l")


def test_mean_and_last_follow_the_attention_mask():
    x = _tokens()
    mean = make_reducer(parse_reduction("mean"), (5, 3), layer="l")
    last = make_reducer(parse_reduction("last"), (5, 3), layer="l")
    expected_mean = np.stack([x[i][MASK[i] == 1].numpy().mean(axis=0) for i in range(4)])
    np.testing.assert_allclose(mean(x, MASK), expected_mean, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(mean(x), x.numpy().mean(axis=1), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(last(x, MASK), torch.stack([x[0, 2], x[1, 4], x[2, 0], x[3, 4]]))
    np.testing.assert_array_equal(last(x), x[:, -1])
    with pytest.raises(InputError, match="attention mask is \\(4, 5\\) but layer 'l' has 2 tokens"):
        mean(_tokens(t=2), MASK)


def test_auto_and_refusals_by_output_kind():
    auto = parse_reduction("auto")
    assert auto.for_shape((5, 3)) == Reduction("mean")
    assert auto.for_shape((3, 8, 8)) == Reduction("none") and auto.for_shape((7,)) == Reduction("none")
    for spec in ("cls", "mean", "last", "avgpool", "token:1"):
        assert parse_reduction(spec).for_shape((7,)) == Reduction("none")  # a vector stays itself
    with pytest.raises(InputError, match="^reduction avgpool .*token sequence \\(5x3.*use mean, cls"):
        parse_reduction("avgpool").for_shape((5, 3), layer="blocks.0")
    with pytest.raises(InputError, match="^reduction cls .*layer 'conv' gives a spatial map \\(3x8x8\\)"):
        parse_reduction("cls").for_shape((3, 8, 8), layer="conv")


class _TinyEncoder(nn.Module):
    """Embeds token ids, one linear block on every token, a classifier on the masked mean."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 6)
        self.block = nn.Linear(6, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, input_ids, attention_mask):
        h = self.block(self.embed(input_ids))
        return self.head(h[:, 0])


def test_extract_passes_the_mask_to_mean_and_records_the_reduction():
    torch.manual_seed(0)
    model = _TinyEncoder().eval()
    ids = torch.randint(0, 11, (6, 5))
    lengths = [5, 3, 4, 5, 1, 2]
    mask = (torch.arange(5)[None, :] < torch.tensor(lengths)[:, None]).long()
    data = [{"input_ids": ids[i], "attention_mask": mask[i]} for i in range(6)]
    acts = extract(model, data, ["block", "logits"], batch_size=4, use_cache=False)
    with torch.no_grad():
        hidden = model.block(model.embed(ids))
    expected = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    np.testing.assert_allclose(acts["block"], expected, rtol=1e-5, atol=1e-6)
    assert acts.info["block"].reduction == "mean" and acts.info["logits"].reduction == "none"
    with pytest.raises(InputError, match="avgpool .* layer 'block' gives a token sequence"):
        extract(model, data, ["block"], reduction="avgpool", use_cache=False)
