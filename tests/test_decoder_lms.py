"""Neural collapse and spectra of decoder language models (issue 24, item 4).

`collapse` refused a causal LM (`the model's output is (16, 24, 200)`) and a Llama sequence
classifier (`the classifier 'score' is applied to inputs of shape (24, 32) per sample`). Now a
causal LM's logits and its head's input are read at the last real token (attention-mask aware)
or a named position, and a sequence classifier's at the position the model itself pools."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import manifold_probe as mp
from manifold_probe.errors import InputError

transformers = pytest.importorskip("transformers")

N, T, VOCAB = 40, 8, 30
_rng = np.random.default_rng(0)
MASK = (np.arange(T)[None, :] < _rng.integers(3, T + 1, N)[:, None]).astype(np.int64)
IDS = _rng.integers(1, VOCAB, (N, T)) * MASK  # right padding with id 0
LABELS = np.arange(N) % 4
DATA = {"input_ids": IDS, "attention_mask": MASK, "labels": LABELS}
LAST = MASK.sum(1) - 1
LLAMA = dict(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=1, intermediate_size=32, max_position_embeddings=T, bos_token_id=1,
             eos_token_id=1)  # fmt: skip


def _hidden_and_logits(model):
    with torch.no_grad():
        out = model(
            input_ids=torch.as_tensor(IDS), attention_mask=torch.as_tensor(MASK), output_hidden_states=True
        )
    return out.hidden_states[-1].numpy(), out.logits.numpy()


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_a_causal_lm_is_read_at_its_last_real_token(kind):
    torch.manual_seed(0)
    if kind == "gpt2":
        config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=2, n_positions=T,
                                         bos_token_id=1, eos_token_id=1)  # fmt: skip
        model = transformers.GPT2LMHeadModel(config).eval()
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA)).eval()
    hidden, logits = _hidden_and_logits(model)
    result = mp.collapse(model, DATA)
    classifier = result.summary["classifier"]
    assert classifier["module"] == "lm_head" and classifier["position"] == "last"
    assert classifier["n_classes"] == 4  # the classes (next tokens) the labels hold, of 30
    penultimate = mp.collapse(hidden[np.arange(N), LAST], labels=LABELS)
    assert result.metrics[classifier["layer"]]["nc1"] == pytest.approx(
        penultimate.metrics["points"]["nc1"], rel=1e-4
    )
    assert "nc4_ncc_mismatch" in result.metrics[classifier["layer"]]
    by_hand = mp.collapse(logits[np.arange(N), LAST], labels=LABELS)
    assert result.metrics["logits"]["nc1"] == pytest.approx(by_hand.metrics["points"]["nc1"], rel=1e-4)
    spectra = mp.spectra(model, DATA)
    assert all(layer.measured for layer in spectra.layers)
    named = mp.collapse(model, DATA, reduction={"logits": "token:0"})  # a named position
    assert named.summary["classifier"]["position"] == "token:0"
    first = mp.collapse(logits[:, 0], labels=LABELS)
    assert named.metrics["logits"]["nc1"] == pytest.approx(first.metrics["points"]["nc1"], rel=1e-4)
    with pytest.raises(
        InputError, match="read at one token: give logits=last or logits=token:I, not flatten"
    ):
        mp.collapse(model, DATA, reduction={"logits": "flatten"})


def test_a_llama_sequence_classifier_is_read_where_it_pools():
    torch.manual_seed(1)
    config = transformers.LlamaConfig(**LLAMA, num_labels=4, pad_token_id=0)
    model = transformers.LlamaForSequenceClassification(config).eval()
    hidden, logits = _hidden_and_logits(model)
    result = mp.collapse(model, DATA)
    classifier = result.summary["classifier"]
    assert classifier["module"] == "score" and classifier["n_classes"] == 4
    acts = mp.extract(model, DATA, layers="logits", classifier=True)
    np.testing.assert_allclose(acts.module_inputs["score"], hidden[np.arange(N), LAST], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(acts["logits"], logits, rtol=1e-5, atol=1e-5)
    assert all(np.isfinite(result.metrics[name]["nc1"]) for name in ("penultimate", "logits"))
    assert "nc3_self_duality" in result.metrics[classifier["layer"]]
    assert all(layer.measured for layer in mp.spectra(model, DATA).layers)
