"""Every example in a docstring of the library runs as written and prints what it says (doctest).

The examples share one namespace, as a reader of the docs would have it: `mp`, `np`, `torch`, a
small trained digits-cnn `model` (also saved as `ckpt.pt`, with an untrained twin
`untrained.pt`), its `data` (300 digits), their activations `acts`, `X` (500 points on the unit
sphere S^2) and two point files, `embeddings.npy` and `labels.npy`; each example runs in that
folder. An example that shows no output must print none.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import numpy as np
import pytest
import torch

import manifold_probe as mp

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _docstring_tests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = []
    for info in pkgutil.walk_packages(mp.__path__, "manifold_probe."):
        module = importlib.import_module(info.name)
        found += [test for test in finder.find(module, module=module) if test.examples]
    return sorted(found, key=lambda test: test.name)


TESTS = _docstring_tests()


@pytest.fixture(scope="module")
def namespace(tmp_path_factory):
    import warnings

    from manifold_probe.study.training import FewStepsWarning, train_and_save

    folder = tmp_path_factory.mktemp("doctests")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewStepsWarning)
        train_and_save("digits-cnn", {"width": 8, "depth": 2}, out=folder / "ckpt.pt", epochs=1, seed=0)
        train_and_save("digits-cnn", {"width": 8, "depth": 2}, out=folder / "untrained.pt", epochs=0, seed=0)
    rng = np.random.default_rng(0)
    np.save(folder / "embeddings.npy", rng.normal(size=(300, 5)).astype(np.float32))
    np.save(folder / "labels.npy", rng.integers(0, 3, 300))
    sphere = rng.normal(size=(500, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    model = mp.load_model(folder / "ckpt.pt")
    data = mp.load_data("digits", n_points=300)
    names = {"mp": mp, "np": np, "torch": torch, "model": model, "data": data, "X": sphere}
    names["acts"] = mp.extract(model, data)
    return folder, names


def test_the_docstrings_have_examples():
    assert len(TESTS) > 40  # the public API documents itself by example


@pytest.mark.parametrize("test", TESTS, ids=[test.name for test in TESTS])
def test_docstring_example(test, namespace, monkeypatch):
    folder, names = namespace
    monkeypatch.chdir(folder)
    test.globs.update(names)
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
