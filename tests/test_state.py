"""state_dict / to_bytes / pickle round trips are exact; damaged bytes are refused."""

import copy
import pickle
import struct
import zlib

import numpy as np
import pytest

from streamlearn import ColumnarRegressor, ColumnarTD, serialization
from streamlearn.serialization import MAGIC, SerializationError


def _stream(seed, T):
    rng = np.random.default_rng(seed)
    for t in range(T):
        x = {"u": float(rng.normal()), "v": float(rng.uniform(0, 5))}
        if t > T // 3:
            x["w"] = float(rng.integers(0, 3))
        yield x, float(10 * x["u"] + rng.normal())


def _run(model, stream):
    """Prequential predictions (with an unlabelled event every 7th step)."""
    out = []
    for t, (x, y) in enumerate(stream):
        out.append(model.predict_one(x))
        if t % 7 == 6:
            model.observe_one(x)
        else:
            model.learn_one(x, y)
    return out


@pytest.mark.parametrize("params", [
    {},
    {"optimizer": "sgd", "normalize": False, "step_size": 1e-3},
    {"lateral_density": 0.3},
    {"lateral_density": 0.5, "meta": True, "head_step_size": 0.02},
    {"dtype": "float32", "lateral_density": 0.3},
])
@pytest.mark.parametrize("how", ["state_dict", "bytes", "pickle", "deepcopy"])
def test_round_trip_mid_stream_is_bit_identical(params, how):
    stream = list(_stream(0, 300))
    model = ColumnarRegressor(seed=5, **params)
    _run(model, stream[:120])
    model.predict_one(stream[120][0])  # a pending cached step must not leak into the copy
    if how == "state_dict":
        copy_ = ColumnarRegressor.from_state_dict(model.state_dict())
    elif how == "bytes":
        copy_ = ColumnarRegressor.from_bytes(model.to_bytes())
    elif how == "pickle":
        copy_ = pickle.loads(pickle.dumps(model))
    else:
        copy_ = copy.deepcopy(model)
    assert copy_.to_bytes() == model.to_bytes()
    assert _run(copy_, stream[120:]) == _run(model, stream[120:])
    assert copy_.to_bytes() == model.to_bytes()


def test_state_dict_layout():
    model = ColumnarRegressor(n_columns=7, seed=1)
    for x, y in _stream(1, 50):
        model.learn_one(x, y)
    state = model.state_dict()
    m = len(state["feature_names"])
    assert state["feature_names"] == ["u", "v", "w"]
    assert state["format_version"] == 1 and state["class"] == "ColumnarRegressor"
    assert state["params"] == model._get_params()
    for key in ("parameters", "trace_h", "trace_c"):
        assert state[key].shape == (7, 4, m + 2) and state[key].dtype == np.float64
    for key in ("h", "c", "head_weights"):
        assert state[key].shape == (7,)
    assert isinstance(state["head_bias"], float)
    # state is a copy: changing it does not change the learner
    state["parameters"][:] = 0.0
    assert np.any(model.state_dict()["parameters"] != 0.0)


@pytest.mark.parametrize("n_columns", [7, 128, 600])
def test_per_parameter_arrays_keep_the_kernels_layout(n_columns):
    """New, grown and loaded networks keep the kernel's layout: C order (n, 4, K) below
    ROWS_BELOW_COLUMNS columns, else (n, 4, K) views of rows of a C-contiguous (4, K, s)
    array (s = row_stride(n)), large ones page-aligned; an array in neither layout is
    refused with a clear error."""
    from streamlearn._columnar import ColumnarKernel
    from streamlearn.network import ROWS_BELOW_COLUMNS, row_stride

    model = ColumnarRegressor(n_columns=n_columns, seed=1, meta=True)
    loaded = ColumnarRegressor(n_columns=n_columns, seed=1, meta=True)
    for x, y in _stream(2, 60):  # grows from 0 to 2 to 3 features
        model.learn_one(x, y)
    loaded.load_state_dict(model.state_dict())
    for net in (ColumnarRegressor(n_columns=n_columns)._net, model._net, loaded._net):
        for key in ("P", "TH", "TC", "V", "AUX"):
            if key not in net.arrays:
                continue
            if n_columns < ROWS_BELOW_COLUMNS:
                assert net.arrays[key].flags.c_contiguous, key
                continue
            rows = net.arrays[key].transpose(1, 2, 0)
            s = row_stride(n_columns, 8)
            assert rows.strides == (rows.shape[1] * s * 8, s * 8, 8), key
            assert (s * 8) % 1024 != 0, key
            if rows.nbytes >= 1 << 16:  # large ones on a page, 512 B .. 3 KiB into it
                assert rows.ctypes.data % 512 == 0, key
    arrays = dict(model._net.arrays, P=np.asfortranarray(model._net.arrays["P"]))
    with pytest.raises(ValueError, match="C-contiguous or column-innermost"):
        ColumnarKernel(**arrays, **model._net.config.kernel_args())


def test_the_kernel_names_the_arrays_it_views():
    """The kernel's signature is the list of arrays it views: a network's arrays fit it
    exactly, and a missing, unknown or mistyped array is refused with its name."""
    from streamlearn._columnar import ColumnarKernel

    for model in (ColumnarRegressor(n_columns=3, seed=1), ColumnarTD(n_columns=3, seed=1)):
        model.learn_one({"a": 1.0}, 1.0)
        arrays, args = dict(model._net.arrays), model._net.config.kernel_args()
        ColumnarKernel(**arrays, **args)
        with pytest.raises(TypeError, match="hs_var"):
            ColumnarKernel(**{k: v for k, v in arrays.items() if k != "hs_var"}, **args)
        with pytest.raises(TypeError, match="h_prev"):
            ColumnarKernel(**arrays, h_prev=arrays["h"], **args)
        with pytest.raises(ValueError, match="dtype"):
            ColumnarKernel(**dict(arrays, h=arrays["h"].astype(np.float32)), **args)


def test_to_bytes_is_deterministic():
    a, b = ColumnarRegressor(seed=3), ColumnarRegressor(seed=3)
    for x, y in _stream(2, 100):
        a.learn_one(x, y)
        b.learn_one(x, y)
    assert a.to_bytes() == b.to_bytes()


def test_damaged_bytes_are_refused():
    data = ColumnarRegressor(seed=3).to_bytes()
    with pytest.raises(SerializationError, match="checksum"):
        ColumnarRegressor.from_bytes(data[:-20] + bytes(20))
    with pytest.raises(SerializationError):
        ColumnarRegressor.from_bytes(data[: len(data) // 2])
    with pytest.raises(SerializationError, match="magic"):
        ColumnarRegressor.from_bytes(b"\x80\x04pickle" + data)


def test_a_header_with_a_bad_shape_is_refused_even_with_a_valid_checksum():
    def sealed(header: bytes, payload: bytes) -> bytes:
        body = MAGIC + struct.pack("<Q", len(header)) + header + payload
        return body + struct.pack("<I", zlib.crc32(body))

    good = b'{"arrays":[{"dtype":"<f8","path":"a","shape":[2]}],"tree":{"a":{"__array__":"a"}}}'
    assert serialization.unpack(sealed(good, struct.pack("<2d", 1.5, -2.0)))["a"].tolist() \
        == [1.5, -2.0]
    with pytest.raises(SerializationError, match="malformed shape"):
        serialization.unpack(sealed(good.replace(b"[2]", b"[-2]"), b""))
    with pytest.raises(SerializationError, match="truncated"):
        serialization.unpack(sealed(good.replace(b"[2]", b"[3]"), struct.pack("<2d", 1, 2)))


def test_load_state_dict_checks_what_it_loads():
    model = ColumnarRegressor(n_columns=3, seed=0)
    for x, y in _stream(3, 20):
        model.learn_one(x, y)
    state = model.state_dict()
    other = ColumnarRegressor(n_columns=4, seed=0)
    with pytest.raises(ValueError, match="params"):
        other.load_state_dict(state)
    bad = dict(state, parameters=state["parameters"][:, :, :-1])
    with pytest.raises(ValueError, match="shape"):
        ColumnarRegressor.from_state_dict(bad)
    nan = dict(state, trace_h=np.full_like(state["trace_h"], np.nan))
    with pytest.raises(ValueError, match="non-finite"):
        ColumnarRegressor.from_state_dict(nan)
    with pytest.raises(ValueError, match="format_version"):
        ColumnarRegressor.from_state_dict(dict(state, format_version=99))


def test_reset_state_zeroes_states_and_traces_only():
    model = ColumnarRegressor(seed=2)
    for x, y in _stream(4, 30):
        model.learn_one(x, y)
    before = model.state_dict()
    model.reset_state()
    after = model.state_dict()
    for key in ("h", "c", "trace_h", "trace_c"):
        assert not np.any(after[key])
    np.testing.assert_array_equal(after["parameters"], before["parameters"])
    np.testing.assert_array_equal(after["head_weights"], before["head_weights"])


@pytest.mark.parametrize("params", [{}, {"n_columns": 20}, {"columns_per_stage": 2,
                                                          "n_columns": 4, "steps_per_stage": 9}])
def test_steps_after_reset_state_match_a_learner_loaded_from_its_bytes(params):
    """reset_state (and a stage change) drop the network's kernel; the next steps must run
    on the rebuilt one, exactly as a learner loaded from the same bytes runs them."""
    model = ColumnarRegressor(seed=2, **params)
    stream = list(_stream(5, 50))
    for x, y in stream[:30]:
        model.learn_one(x, y)
    model.reset_state()
    loaded = ColumnarRegressor.from_bytes(model.to_bytes())
    for x, y in stream[30:]:
        assert model.predict_one(x) == loaded.predict_one(x)
        model.learn_one(x, y)
        loaded.learn_one(x, y)
    assert model.to_bytes() == loaded.to_bytes()


def test_a_new_learner_builds_no_kernel_for_its_empty_network():
    """A service creates a learner per key, which grows on its first event: the empty
    network's kernel would be built for nothing."""
    model = ColumnarRegressor(seed=0)
    empty = model._net
    model.predict_one({"a": 1.0})
    model.learn_one({"a": 1.0}, 2.0)
    assert model._net is not empty and "kernel" not in vars(empty)


def test_fast_params_match_rivers_get_params():
    model = ColumnarRegressor(n_columns=3, step_size=0.2, optimizer="sgd", seed=4)
    assert model._params() == model._get_params()


def test_lateral_connections_and_meta_traces_are_in_the_state():
    model = ColumnarRegressor(n_columns=10, lateral_density=0.4, meta=True, seed=8)
    for x, y in _stream(8, 40):
        model.learn_one(x, y)
    state = model.state_dict()
    lat = state["lateral"]
    nnz = len(lat["indices"])
    assert 0 < nnz < 10 * 9 and lat["indptr"][-1] == nnz
    assert lat["weights"].shape == lat["trace_h"].shape == lat["trace_c"].shape == (nnz, 4)
    assert np.any(lat["trace_h"]) and np.any(state["meta"]["trace_w"])
    receivers = np.repeat(np.arange(10), np.diff(lat["indptr"]))
    assert not np.any(receivers == lat["indices"])  # no self-connections
    broken = ColumnarRegressor.from_state_dict(state).state_dict()
    broken["lateral"]["indices"] = receivers  # self-connections are refused
    with pytest.raises(ValueError, match="other columns"):
        ColumnarRegressor.from_state_dict(broken)


@pytest.mark.parametrize("cls, params", [
    (ColumnarRegressor, {}), (ColumnarRegressor, {"dtype": "float32"}),
    (ColumnarRegressor, {"meta": True, "lateral_density": 0.3}),
    (ColumnarRegressor, {"n_columns": 6, "columns_per_stage": 2, "steps_per_stage": 7}),
    (ColumnarTD, {}), (ColumnarRegressor, {"n_columns": 40, "normalize": False})])
def test_to_bytes_is_the_generic_pack_through_a_learners_life(cls, params):
    """to_bytes fills in a header encoded once per network: the bytes must be those of the
    generic serialisation after growth, resets, stage changes and loads alike."""
    rng = np.random.default_rng(5)
    model = cls(seed=3, **params)
    for t in range(60):
        name = ["a", "b%s", "c\x00d", "%(x)s", 7][int(rng.integers(5))]
        model.learn_one({name: float(rng.normal()), "e": 1.0}, float(rng.normal()))
        assert model.to_bytes() == serialization.pack(model._state(copy=False)), t
        if t == 30:
            model.reset_state()
        if t == 40:
            model.load_state_dict(cls.from_bytes(model.to_bytes()).state_dict())


@pytest.mark.parametrize("cls, params", [
    (ColumnarRegressor, {}), (ColumnarRegressor, {"lateral_density": 0.4, "n_columns": 6}),
    (ColumnarRegressor, {"n_columns": 6, "columns_per_stage": 3}), (ColumnarTD, {})])
def test_spawn_is_clone_with_another_seed(cls, params):
    prototype = cls(seed=1, **params)
    spawned, cloned = prototype.spawn(12345), prototype.clone({"seed": 12345})
    for t in range(20):
        x = {"a": t / 20, "b": 1.0}
        spawned.learn_one(x, t % 3)
        cloned.learn_one(x, t % 3)
    assert spawned.to_bytes() == cloned.to_bytes()
    assert spawned._get_params() == cloned._get_params()


@pytest.mark.parametrize("cls", [ColumnarRegressor, ColumnarTD])
def test_clone_with_attributes_keeps_what_was_learned(cls):
    """River's clone(include_attributes=True) copies the learned state too, independent of
    the original; new params that keep the shapes apply; others are refused by name."""
    model = cls(n_columns=4, seed=5)
    for x, y in _stream(2, 40):
        model.learn_one(x, y)
    clone = model.clone(include_attributes=True)
    assert clone.to_bytes() == model.to_bytes()
    x = {"x0": 0.1, "x1": -0.4}
    clone.learn_one(x, 1.0)
    assert clone.to_bytes() != model.to_bytes()
    assert cls(n_columns=4, seed=5).clone().to_bytes() == model.clone().to_bytes()  # fresh
    slower = model.clone({"step_size": 0.0001}, include_attributes=True)
    assert slower.step_size == 0.0001
    assert slower.state_dict()["parameters"].tobytes() == \
        model.state_dict()["parameters"].tobytes()
    with pytest.raises(SerializationError, match="parameters"):
        model.clone({"n_columns": 3}, include_attributes=True)


def test_a_kernel_refuses_copies_and_a_network_copies_its_arrays():
    import copy

    model = ColumnarRegressor(n_columns=3, seed=1)
    model.learn_one({"a": 1.0}, 2.0)
    for copier in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="cannot be copied"):
            copier(model._net.kernel)
    net = copy.deepcopy(model._net)
    assert net.arrays["P"] is not model._net.arrays["P"]
    for key, value in model._net.arrays.items():
        assert np.array_equal(net.arrays[key], value), key
    assert copy.deepcopy(model).to_bytes() == model.to_bytes()


def test_states_saved_before_newer_params_load_with_their_defaults():
    """A state saved before dtype and stage_lag existed lists neither: it loads with their
    defaults, and steps identically."""
    model = ColumnarRegressor(n_columns=4, columns_per_stage=2, steps_per_stage=10, seed=6)
    for x, y in _stream(3, 15):
        model.learn_one(x, y)
    state = model.state_dict()
    old = dict(state, params={k: v for k, v in state["params"].items()
                              if k not in ("dtype", "stage_lag")})
    loaded = ColumnarRegressor.from_state_dict(old)
    assert (loaded.dtype, loaded.stage_lag) == ("float64", 0)
    assert loaded.to_bytes() == model.to_bytes()


@pytest.mark.parametrize("make", [
    lambda: ColumnarRegressor(n_columns=3, seed=1), lambda: ColumnarTD(n_columns=3, seed=2),
    lambda: __import__("streamlearn").ColumnarClassifier(n_columns=3, seed=3),
    lambda: __import__("streamlearn").ColumnarForecaster(n_columns=3, seed=4)])
def test_a_pickle_holds_only_the_learners_bytes(make):
    """A pickle (River's clone, a Flink job's keyed state) names one function, the class's
    from_bytes, and holds one bytes object, its to_bytes(): the unpickler builds no
    internals, and the bytes are checked as from_bytes checks them."""
    import pickletools

    model = make()
    if hasattr(model, "forecast"):
        model.learn_one(1.0, {"a": 1.0})
    else:
        model.learn_one({"a": 1.0}, 1 if type(model).__name__ == "ColumnarClassifier" else 1.0)
    data = pickle.dumps(model)
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
    names = [arg for name, arg in ops if name in ("SHORT_BINUNICODE", "BINUNICODE")]
    # getattr(the class, "from_bytes"): the only globals are builtins.getattr and the class
    assert names == ["builtins", "getattr", type(model).__module__, type(model).__name__,
                     "from_bytes"]
    assert [arg for name, arg in ops if name.startswith("BINBYTES")] == [model.to_bytes()]
    assert pickle.loads(data).to_bytes() == model.to_bytes()
