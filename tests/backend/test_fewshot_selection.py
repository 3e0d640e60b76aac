"""Few-shot classifier choice: the candidates, and the nested cross-validation that measures the choice."""

from __future__ import annotations

import numpy as np
import pytest

from geovec.backend.errors import InputError
from geovec.backend.workflows import classifiers, selection
from geovec.backend.workflows.tiles import normalise


def _data(seed: int = 0, n_blocks: int = 12, per_block: int = 6, dim: int = 16, noise: float = 1.2):
    """Three noisy classes in spatial blocks (a block holds one class, as a labelled polygon does)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, dim))
    blocks = np.repeat(np.arange(n_blocks), per_block)
    y = blocks % 3
    x = normalise(centres[y] + noise * rng.standard_normal((len(y), dim)))
    return x, y, blocks


def test_candidates_and_families() -> None:
    assert classifiers.candidates("auto") == list(classifiers.CANDIDATES)
    assert classifiers.candidates("knn") == ["knn k=1", "knn k=5"]
    assert len(classifiers.candidates("logistic_std")) == 4 and classifiers.candidates("logistic") == ["logistic"]
    with pytest.raises(InputError, match="unknown classifier 'svm'"):
        classifiers.candidates("svm")
    x, y, _ = _data(noise=0.3)
    for name in classifiers.CANDIDATES:  # every configuration learns well-separated classes
        pred = classifiers.make(name).fit(x, y, 4).scores(x).argmax(axis=1)  # class 3 has no example: never wins
        assert (pred == y).mean() >= 0.95 and 3 not in pred, name


def test_knn_votes_of_the_nearest() -> None:
    train = normalise(np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0.2, 1.0]], dtype=np.float32))
    knn = classifiers.KNearest(3).fit(train, np.array([0, 0, 1, 1, 1]), 2)
    s = knn.scores(normalise(np.array([[1, 0.05], [0.05, 1]], dtype=np.float32)))
    assert s.argmax(axis=1).tolist() == [0, 1] and s[0, 0] == pytest.approx(2 / 3, abs=1e-3)


def test_nested_accuracy_is_that_of_the_outer_folds_own_choices() -> None:
    x, y, blocks = _data()
    fold = classifiers.assign_folds(blocks, 4, 0)
    names = list(classifiers.CANDIDATES)
    sel = selection.select(x, y, fold, blocks, 3, names, folds=4, seed=0)
    assert sel.method == max(names, key=lambda m: sel.accuracy[m])  # first best on the shared folds
    assert len(sel.outer_choices) == 4 and sel.nested is not None
    # recompute: each outer fold's choice comes from inner folds of its training blocks only
    pred = np.full(len(y), -1)
    for f, choice in zip(range(4), sel.outer_choices, strict=True):
        test = fold == f
        tr = np.flatnonzero(~test)
        inner = classifiers.assign_folds(blocks[tr], 4, 0)
        accs = {m: classifiers.cross_validate(x[tr], y[tr], inner, 3, m)[0] for m in names}
        assert choice == max(names, key=lambda m: accs[m])
        pred[test] = classifiers.make(choice).fit(x[tr], y[tr], 3).scores(x[test]).argmax(axis=1)
    assert sel.nested == pytest.approx(float((pred == y).mean()))
    assert sel.nested <= max(sel.accuracy.values()) + 1e-9
    one = selection.select(x, y, fold, blocks, 3, ["prototype"], folds=4, seed=0)
    assert one.nested is None and one.outer_choices == [] and one.per_class
