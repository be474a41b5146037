"""Training: bit-for-bit determinism with a seed, a sane accuracy after a short run, the
checkpoint round trip through `load_model` (same logits, stored metrics reproduce), and the
zoo options (mixup, label smoothing, label noise, training-set size) doing what they say."""

import warnings

import numpy as np
import pytest
import torch

from manifold_probe.errors import InputError
from manifold_probe.sources import zoo
from manifold_probe.sources.checkpoint import FORMAT
from manifold_probe.sources.data import load_data
from manifold_probe.sources.models import load_model
from manifold_probe.study.training import (
    TrainingConfig,
    epoch_checkpoint_path,
    evaluate,
    noisy_labels,
    train,
    train_and_save,
    training_data,
)

TINY = {"width": 8, "depth": 2}


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread while these tests run: on a shared 2-core machine under load, two
    spinning torch threads make these tiny steps ~10x slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_same_seed_gives_the_same_weights_bit_for_bit():
    rng_before = torch.get_rng_state()
    first, _, _ = train("digits-cnn", TINY, epochs=1, seed=3)
    second, _, _ = train("digits-cnn", TINY, epochs=1, seed=3)
    other, _, _ = train("digits-cnn", TINY, epochs=1, seed=4)
    a, b, c = first.state_dict(), second.state_dict(), other.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not torch.equal(a["block1.conv.weight"], c["block1.conv.weight"])
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is left alone


def test_short_training_reaches_a_sane_accuracy():
    module, metrics, history = train("digits-cnn", {"width": 16, "depth": 2}, epochs=3, seed=0)
    assert not module.training
    assert metrics["test_accuracy"] > 0.85  # chance is 0.10
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[0]["lr"] == pytest.approx(0.1)  # cosine from lr ...
    assert history[-1]["lr"] < history[1]["lr"] < 0.1  # ... down towards 0
    assert metrics["train_loss"] < history[0]["train_loss"]
    mlp, mlp_metrics, _ = train("digits-mlp", {"width": 32, "depth": 1}, epochs=3, seed=0)
    assert mlp_metrics["test_accuracy"] > 0.85


def test_the_history_scores_a_fixed_test_subset_and_the_metrics_all_of_it(monkeypatch):
    """Per epoch: a stratified subset of at most EPOCH_TEST_POINTS test points (the same one
    each epoch); the checkpoint's metrics: the whole test split (451 digits)."""
    from manifold_probe.study import training

    _, metrics, history = train("digits-cnn", {"width": 8, "depth": 1}, epochs=1, seed=0)
    assert history[-1]["test_points"] == 451 and history[-1]["test_accuracy"] == metrics["test_accuracy"]
    monkeypatch.setattr(training, "EPOCH_TEST_POINTS", 100)
    _, metrics, history = train("digits-cnn", {"width": 8, "depth": 1}, epochs=2, seed=0)
    assert [row["test_points"] for row in history] == [100, 100]
    subset = load_data("digits", split="test", n_points=100, seed=0)
    module, _, _ = train("digits-cnn", {"width": 8, "depth": 1}, epochs=2, seed=0)
    assert history[-1]["test_accuracy"] == evaluate(module, subset, torch.device("cpu"))[1]
    assert metrics["test_loss"] != history[-1]["test_loss"]  # the whole split, not the subset


def test_small_resnet_trains_and_few_steps_are_warned_about():
    from manifold_probe.study.training import FewStepsWarning

    with pytest.warns(FewStepsWarning, match="3 optimiser step\\(s\\) per epoch, 6 in all"):
        train("small-resnet", {"width": 8, "depth": 2}, epochs=2, train_size=300, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewStepsWarning)
        _, metrics, _ = train("small-resnet", {"width": 8, "depth": 2}, epochs=3, batch_size=32, seed=0)
    assert metrics["test_accuracy"] > 0.8  # chance is 0.10


def test_checkpoint_round_trip_gives_the_same_logits(tmp_path):
    out = tmp_path / "run" / "ckpt.pt"
    run = train_and_save("digits-cnn", TINY, out=out, epochs=2, save_every=1, seed=1)
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "ckpt-epoch001.pt",
        "ckpt-epoch002.pt",
        "ckpt.pt",
    ]
    stored = torch.load(out, weights_only=True)
    assert stored["format"] == FORMAT and stored["epoch"] == 2 and stored["data"] == "digits"
    assert stored["arch_args"] == {**TINY, "num_classes": 10, "in_channels": 1, "input_size": 8}
    config = TrainingConfig("digits-cnn", TINY, epochs=2, seed=1)
    assert stored["training"] == {**config.as_dict(), "train_size": 1346}  # the whole split, counted
    assert stored["metrics"] == run.metrics and len(stored["history"]) == 2

    loaded = load_model(out)
    test = load_data("digits", split="test")
    x = test.inputs()
    with torch.no_grad():
        assert torch.equal(loaded.module(x), run.module(x))
    loss, accuracy = evaluate(loaded.module, test, torch.device("cpu"))
    assert accuracy == run.metrics["test_accuracy"]
    assert loss == pytest.approx(run.metrics["test_loss"], rel=1e-6)

    first = load_model(epoch_checkpoint_path(out, 1))
    assert first.checkpoint["epoch"] == 1 and first.digest != loaded.digest
    assert load_model(epoch_checkpoint_path(out, 2)).digest == loaded.digest


def test_data_without_test_split_trains_with_test_metrics_none(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    x = rng.normal(size=(40, 1, 8, 8)) + 3.0 * y[:, None, None, None]  # two separable blobs
    path = tmp_path / "blobs.npz"
    np.savez(path, x=x, y=y)
    module, metrics, _ = train(
        "digits-mlp", {"width": 8, "depth": 1}, data=f"npz:{path}", epochs=10, batch_size=16
    )
    assert metrics["test_accuracy"] is None and metrics["test_loss"] is None
    assert metrics["train_accuracy"] > 0.9
    assert module.head.out_features == 2  # num_classes taken from the data


def test_zero_epochs_saves_the_untrained_network(tmp_path):
    run = train_and_save("digits-mlp", {"width": 8, "depth": 1}, out=tmp_path / "u.pt", epochs=0, seed=3)
    assert run.epoch == 0 and run.history == []
    assert run.metrics["test_accuracy"] < 0.5  # chance level is 0.1
    torch.manual_seed(3)
    fresh = zoo.build_model("digits-mlp", **run.arch_args)
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, run.module.state_dict()[name])


def test_bad_training_settings_are_input_errors():
    with pytest.raises(InputError, match="epochs: must be a whole number of at least 0"):
        TrainingConfig(epochs=-1)
    with pytest.raises(InputError, match="momentum must be below 1"):
        TrainingConfig(momentum=1.0)
    with pytest.raises(InputError, match="num_classes=5 but digits has 10 classes"):
        train("digits-cnn", {"num_classes": 5}, epochs=1)
    with pytest.raises(InputError, match="did you mean digits-mlp"):
        train("digits-mpl", epochs=1)


def _weights(module):
    return {name: t.clone() for name, t in module.state_dict().items()}


def _same(a, b) -> bool:
    return all(torch.equal(a[name], b[name]) for name in a)


def test_train_size_trains_on_a_seeded_stratified_subset():
    data = training_data(TrainingConfig(train_size=100, seed=2))
    assert data.fitted.n_points == 100 and data.fitted is data.clean
    assert set(np.bincount(data.fitted.labels, minlength=10)) <= {9, 10, 11}  # ~10 of every digit
    again = training_data(TrainingConfig(train_size=100, seed=2))
    other = training_data(TrainingConfig(train_size=100, seed=3))
    assert np.array_equal(data.fitted.indices, again.fitted.indices)
    assert not np.array_equal(data.fitted.indices, other.fitted.indices)
    assert training_data(TrainingConfig()).fitted.n_points == 1346
    _, small, _ = train("digits-mlp", {"width": 8, "depth": 1}, epochs=2, train_size=100)
    _, whole, _ = train("digits-mlp", {"width": 8, "depth": 1}, epochs=2)
    assert small["test_accuracy"] < whole["test_accuracy"]


def test_label_noise_replaces_the_stated_fraction_by_other_classes_reproducibly():
    labels = np.arange(1000) % 10
    noisy = noisy_labels(labels, 0.3, 10, seed=5)
    changed = noisy != labels
    assert changed.sum() == 300  # exactly round(0.3 n), each to a different class
    assert np.array_equal(noisy, noisy_labels(labels, 0.3, 10, seed=5))
    assert not np.array_equal(noisy, noisy_labels(labels, 0.3, 10, seed=6))
    offsets = (noisy[changed] - labels[changed]) % 10
    assert set(np.unique(offsets)) == set(range(1, 10))  # every other class is reachable
    assert np.array_equal(noisy_labels(labels, 0.0, 10, seed=5), labels)

    data = training_data(TrainingConfig(label_noise=0.25, seed=1))
    assert (data.fitted.labels != data.clean.labels).sum() == round(0.25 * 1346)
    again = training_data(TrainingConfig(label_noise=0.25, seed=1))
    assert np.array_equal(data.fitted.labels, again.fitted.labels)


def test_label_noise_metrics_use_the_fitted_labels_and_report_the_true_ones():
    module, metrics, history = train("digits-cnn", TINY, epochs=3, label_noise=0.5, seed=0)
    data = training_data(TrainingConfig(label_noise=0.5, seed=0))
    _, on_fitted = evaluate(module, data.fitted, torch.device("cpu"))
    _, on_true = evaluate(module, data.clean, torch.device("cpu"))
    assert metrics["train_accuracy"] == on_fitted and metrics["train_accuracy_clean"] == on_true
    assert on_fitted < on_true  # half the fitted labels are wrong; a 3-epoch net cannot memorise them
    _, clean_metrics, _ = train("digits-cnn", TINY, epochs=1, seed=0)
    assert "train_accuracy_clean" not in clean_metrics


def test_mixup_is_deterministic_with_a_seed_and_changes_training():
    first, m1, h1 = train("digits-cnn", TINY, epochs=1, mixup=0.4, seed=0)
    second, _, _ = train("digits-cnn", TINY, epochs=1, mixup=0.4, seed=0)
    plain, m0, h0 = train("digits-cnn", TINY, epochs=1, seed=0)
    assert _same(_weights(first), _weights(second))
    assert not _same(_weights(first), _weights(plain))
    assert h1[0]["train_loss"] > h0[0]["train_loss"]  # soft mixed targets cost more than hard ones
    stronger, _, _ = train("digits-cnn", TINY, epochs=1, mixup=1.0, seed=0)
    assert not _same(_weights(first), _weights(stronger))


def test_label_smoothing_changes_training_and_raises_the_training_loss():
    smooth, _, hs = train("digits-mlp", {"width": 32, "depth": 1}, epochs=10, label_smoothing=0.2, seed=0)
    plain, _, hp = train("digits-mlp", {"width": 32, "depth": 1}, epochs=10, seed=0)
    assert not _same(_weights(smooth), _weights(plain))
    # the running loss is the cross-entropy to the smoothed targets (1 - eps) onehot + eps / C,
    # bounded below by their entropy, which the unsmoothed loss falls below
    uniform = torch.full((10,), 0.2 / 10) + 0.8 * torch.nn.functional.one_hot(torch.tensor(0), 10)
    entropy = float(-(uniform * uniform.log()).sum())
    assert hs[-1]["train_loss"] > entropy > hp[-1]["train_loss"]


def test_options_round_trip_through_the_checkpoint(tmp_path):
    options = {"mixup": 0.2, "label_smoothing": 0.1, "label_noise": 0.2, "train_size": 120}
    run = train_and_save("digits-cnn", TINY, out=tmp_path / "m.pt", epochs=1, seed=4, **options)
    stored = torch.load(tmp_path / "m.pt", weights_only=True)
    assert {key: stored["training"][key] for key in options} == options
    assert stored["training"]["epochs"] == 1 and stored["training"]["weight_decay"] == 5e-4
    assert TrainingConfig(**stored["training"]) == run.config
    assert stored["metrics"]["train_accuracy_clean"] == run.metrics["train_accuracy_clean"]
    retrained, _, _ = train("digits-cnn", TINY, **{k: v for k, v in stored["training"].items()
                                                  if k not in ("arch", "arch_args")})  # fmt: skip
    assert _same(_weights(retrained), stored["state_dict"])  # the stored settings reproduce the run


def test_bad_zoo_options_are_input_errors():
    with pytest.raises(InputError, match="label_noise: must be a number from 0 to 1"):
        TrainingConfig(label_noise=1.5)
    with pytest.raises(InputError, match="label_smoothing: must be a number from 0 to 1"):
        TrainingConfig(label_smoothing=-0.1)
    with pytest.raises(InputError, match="mixup: must be a non-negative"):
        TrainingConfig(mixup=-1)
    with pytest.raises(InputError, match="train_size: must be a whole number of at least 1"):
        TrainingConfig(train_size=0)
    with pytest.raises(InputError, match="has 1346 points"):
        train("digits-mlp", epochs=1, train_size=5000)
    with pytest.raises(TypeError, match="mixupp"):
        train("digits-mlp", epochs=1, mixupp=0.2)
