"""ColumnarClassifier: its gradient against the independent float64 BPTT reference, class
growth, chunks against single steps, state round trips and bad labels."""

import numpy as np
import pandas as pd
import pytest

from conftest import dense_inputs, load_random_parameters
from reference import bptt, final_state
from streamlearn import ColumnarClassifier


def _stream(rng, T):
    return [{"a": rng.normal(), "b": rng.normal(), "c": rng.normal()} for _ in range(T)]


def _loaded(rng, classes, step_size, n=5, seed=0):
    """A classifier that knows ``classes``, with random columns and head, zero traces."""
    model = ColumnarClassifier(n_columns=n, step_size=step_size, normalize=False,
                               optimizer="sgd", seed=seed)
    for label in classes:  # registers the classes in order (step_size 0: nothing learned)
        model._net = model._net.with_class(label)
    load_random_parameters(model, ["a", "b", "c"], rng)
    state = model.state_dict()
    logits = state["class_head"]["bias"].shape[0]
    state["class_head"]["weights"] = rng.uniform(-1.0, 1.0, size=(logits, n))
    state["class_head"]["bias"] = rng.uniform(-1.0, 1.0, size=logits)
    model.load_state_dict(state)
    return model


def _reference_probabilities(W, b, h):
    z = W @ h + b
    if len(z) == 1:
        return 1.0 / (1.0 + np.exp(-z))
    e = np.exp(z - z.max())
    return e / e.sum()


@pytest.mark.parametrize("classes", [["no", "yes"], ["x", 7, True]])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_step_is_the_exact_log_loss_gradient(classes, seed):
    """Columns stepped with step 0 over a stream, then one SGD step: every parameter moves
    by -step times the BPTT gradient of the log loss through the whole stream, and the
    probabilities are the reference's."""
    rng = np.random.default_rng(seed)
    frozen = _loaded(rng, classes, step_size=0.0, seed=seed)
    stream = _stream(rng, 30)
    labels = [classes[i] for i in rng.integers(0, len(classes), size=len(stream))]
    for x, y in zip(stream[:-1], labels[:-1]):
        frozen.learn_one(x, y)
    before = frozen.state_dict()
    stepped = ColumnarClassifier(n_columns=5, step_size=0.01, normalize=False,
                                 optimizer="sgd", seed=seed)
    stepped.load_state_dict(dict(before, params=stepped._params()))
    proba = stepped.predict_proba_one(stream[-1])
    stepped.learn_one(stream[-1], labels[-1])
    after = stepped.state_dict()

    P, W, b = before["parameters"], before["class_head"]["weights"], before["class_head"]["bias"]
    xs = dense_inputs(stream, before["feature_names"])
    h, _ = final_state(P, xs)
    p = _reference_probabilities(W, b, h)
    if len(p) == 1:
        expected = {classes[0]: 1.0 - p[0], classes[1]: p[0]}
        t = np.array([float(labels[-1] == classes[1])])
    else:
        expected = dict(zip(classes, p))
        t = np.array([float(labels[-1] == c) for c in classes])
    assert proba.keys() == expected.keys()
    for label in classes:
        assert proba[label] == pytest.approx(expected[label], rel=1e-12, abs=1e-15)
    seed_h = W.T @ (p - t)  # dL/dh of L = -log p_y
    grad = bptt(P, xs, seed_h, np.zeros_like(seed_h))
    np.testing.assert_allclose(after["parameters"], P - 0.01 * grad, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(after["class_head"]["weights"], W - 0.01 * np.outer(p - t, h),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(after["class_head"]["bias"], b - 0.01 * (p - t), rtol=1e-12)


def test_a_new_class_grows_the_head_and_leaves_the_columns():
    rng = np.random.default_rng(4)
    model = ColumnarClassifier(n_columns=4, seed=4)
    for x in _stream(rng, 50):
        model.learn_one(x, bool(x["a"] > 0))
    x = {"a": 0.3, "b": -0.2, "c": 1.0}
    before, proba = model.state_dict(), model.predict_proba_one(x)
    grown = model._net.with_class("third")
    after = ColumnarClassifier(n_columns=4, seed=4)
    after._adopt(grown, model._steps)
    state = after.state_dict()
    for key in ("parameters", "trace_h", "trace_c", "h", "c"):
        np.testing.assert_array_equal(state[key], before[key])
    three = after.predict_proba_one(x)
    assert list(three) == model.classes + ["third"]
    # logistic(z) = softmax(0, z): the odds of the two known classes are kept
    assert three[True] / three[False] == pytest.approx(proba[True] / proba[False], rel=1e-12)
    assert model.classes == [False, True]  # the learner itself is unchanged


def test_learn_many_is_learn_one_in_a_loop_across_new_classes():
    rng = np.random.default_rng(5)
    stream = _stream(rng, 120)
    labels = ["a"] * 10 + ["b", "a"] * 20 + ["c"] + [str(i % 4) for i in range(69)]
    one, many = ColumnarClassifier(n_columns=6, seed=5), ColumnarClassifier(n_columns=6, seed=5)
    for x, y in zip(stream, labels):
        one.learn_one(x, y)
    frame = pd.DataFrame(stream)
    many.learn_many(frame.iloc[:60], pd.Series(labels[:60]))
    many.learn_many(frame.iloc[60:], pd.Series(labels[60:]))
    assert one.to_bytes() == many.to_bytes()
    rows = many.predict_proba_many(frame.iloc[:5])
    for i in range(5):
        expected = many.predict_proba_one(stream[i])
        assert rows.iloc[i].to_dict() == pytest.approx(expected, rel=1e-12)
    assert list(many.predict_many(frame.iloc[:5])) == \
        [many.predict_one(x) for x in stream[:5]]
    assert one.to_bytes() == many.to_bytes()  # predictions changed nothing


@pytest.mark.parametrize("labels", [[True, False], [3, 1, 2], ["up", "down", "flat", 0.5]])
def test_bytes_round_trip_keeps_the_classes_and_every_step(labels):
    rng = np.random.default_rng(6)
    model = ColumnarClassifier(n_columns=4, seed=6)
    stream = _stream(rng, 40)
    for i, x in enumerate(stream[:30]):
        model.learn_one(x, labels[i % len(labels)])
    copy = ColumnarClassifier.from_bytes(model.to_bytes())
    assert copy.classes == model.classes
    for i, x in enumerate(stream[30:]):
        assert copy.predict_proba_one(x) == model.predict_proba_one(x)
        copy.learn_one(x, labels[i % len(labels)])
        model.learn_one(x, labels[i % len(labels)])
    assert copy.to_bytes() == model.to_bytes()


@pytest.mark.parametrize("label, error", [([1], TypeError), (None, TypeError),
                                          (float("nan"), TypeError), ((1, 2), TypeError),
                                          (b"raw", TypeError)])
def test_a_bad_label_is_refused_and_changes_nothing(label, error):
    rng = np.random.default_rng(7)
    model = ColumnarClassifier(n_columns=3, seed=7)
    for x in _stream(rng, 5):
        model.learn_one(x, "ok")
    saved = model.to_bytes()
    with pytest.raises(error):
        model.learn_one({"a": 1.0}, label)
    with pytest.raises(error):
        model.learn_many(pd.DataFrame([{"a": 1.0}, {"a": 2.0}]), pd.Series(["ok", label]))
    assert model.to_bytes() == saved


def test_a_refused_step_adds_no_class():
    model = ColumnarClassifier(n_columns=3, seed=8)
    model.learn_one({"a": 1.0}, "first")
    saved = model.to_bytes()
    for x in ({"a": float("nan")}, {"a": "text"}, ["a"]):
        with pytest.raises((TypeError, ValueError)):
            model.learn_one(x, "second")
    assert model.classes == ["first"]
    assert model.to_bytes() == saved


def test_state_with_classes_that_do_not_fit_the_head_is_refused():
    from streamlearn.serialization import SerializationError

    model = ColumnarClassifier(n_columns=3, seed=9)
    for label in ("a", "b", "c"):
        model.learn_one({"x": 1.0}, label)
    state = model.state_dict()
    for classes in (["a", "b"], ["a", "a", "b"], [["a"], "b", "c"], "abc"):
        with pytest.raises(SerializationError):
            ColumnarClassifier(n_columns=3, seed=9).load_state_dict(dict(state, classes=classes))
