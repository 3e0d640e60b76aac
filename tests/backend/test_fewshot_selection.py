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


def test_logistic_fit_reaches_the_optimum_and_says_when_it_did_not(caplog) -> None:
    x, y, _ = _data(noise=0.8)
    l2 = 1e-3
    fit = classifiers.softmax_regression(x, y, 4, l2, max_iter=500)
    assert fit.converged and 0 < fit.iterations <= 500 and fit.absent.tolist() == [False, False, False, True]
    # at the optimum the gradient of the objective, recomputed here, vanishes (class 3 has no example)
    w, b = fit.w.astype(np.float64), fit.b.astype(np.float64)
    z = x @ w[:, :3] + b[:3]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    v = 1.0 / np.bincount(y)[y]
    v /= v.sum()
    grad_w = x.T @ (v[:, None] * (p - np.eye(3)[y])) + 2 * l2 * w[:, :3]
    assert np.abs(grad_w).max() < 1e-4
    with caplog.at_level("WARNING"):
        short = classifiers.softmax_regression(x, y, 4, l2, max_iter=2)
    assert not short.converged and short.iterations == 2
    assert "did not converge in 2 steps" in caplog.text
    assert classifiers.Logistic().fit(x, y, 4).fit_result.converged  # the defaults converge on such data


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
