"""softpipe.TreeModel against XGBoost 1.7 as the oracle.

Small models of every supported objective (plus dart, multiclass, categorical splits, deep trees and
data with NaNs) are trained once per session; each is saved as JSON, loaded by softpipe, and its
margins and outputs on 100k random rows are compared with the booster's: max |margin difference|
<= 1e-5, identical argmax classes, outputs within 1e-5 relative. Then the API edges: base_score
through each link and in XGBoost 2.x's "[3E-1]" form, the two layouts, 1-D input, threads, dtypes,
strided and torch input, and the error for each kind of bad model or bad input.
"""
import json
import re
import zlib

import numpy as np
import pytest

import softpipe

xgb = pytest.importorskip("xgboost")

N_FEATURES = 12
N_TRAIN = 3000
N_CHECK = 100_000
MARGIN_ATOL = 1e-5
OUT_RTOL = 1e-5


# ---------------------------------------------------------------------------------------- helpers

def make_x(n, seed, nan_frac=0.1, n_features=N_FEATURES, n_cat=0, n_levels=8):
    """Rows of normal features with NaNs; the first n_cat columns hold categories 0 .. n_levels-1
    (in check data also the occasional unseen or negative category)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features)).astype(np.float32)
    if n_cat:
        X[:, :n_cat] = rng.integers(0, n_levels, size=(n, n_cat))
    X[rng.random(X.shape) < nan_frac] = np.nan
    return X


def make_y(X, task, seed):
    rng = np.random.default_rng(seed + 1)
    Z = np.nan_to_num(X, nan=0.3)
    s = Z[:, 0] + 0.5 * Z[:, 1] * Z[:, 2] - 0.7 * (Z[:, 3] > 0.2) + 0.3 * np.sin(3 * Z[:, 4])
    s = s + 0.3 * rng.normal(size=len(s))
    if task == "binary":
        return (s > 0).astype(np.float32)
    if task == "prob":  # reg:logistic takes labels in [0, 1]
        return (1 / (1 + np.exp(-s))).astype(np.float32)
    if task == "count":
        return rng.poisson(np.exp(0.4 * s)).astype(np.float32)
    if task == "positive":
        return (np.exp(0.4 * s) * rng.gamma(2.0, 0.5, size=len(s)) + 1e-3).astype(np.float32)
    if task == "tweedie":
        y = np.exp(0.4 * s) * rng.gamma(2.0, 0.5, size=len(s))
        y[rng.random(len(s)) < 0.3] = 0
        return y.astype(np.float32)
    if task == "multi":
        return np.digitize(s, [-1.0, 0.0, 1.0]).astype(np.float32)  # 4 classes
    if task == "rank":
        return np.digitize(s, [-1.0, 0.0, 1.0]).astype(np.float32)  # relevance 0..3
    return s.astype(np.float32)


TASK_OF = {
    "binary:logistic": "binary", "binary:logitraw": "binary", "reg:squarederror": "reg",
    "reg:logistic": "prob", "count:poisson": "count", "reg:gamma": "positive",
    "reg:tweedie": "tweedie", "multi:softprob": "multi", "multi:softmax": "multi",
    "rank:pairwise": "rank",
}

# name -> (params, rounds, number of categorical columns)
BASE = {"tree_method": "hist", "max_depth": 5, "eta": 0.3, "nthread": 2, "seed": 7}
MODELS = {
    obj.replace(":", "_"): (dict(BASE, objective=obj), 30, 0) for obj in TASK_OF
}
MODELS["multi_softprob"][0]["num_class"] = 4
MODELS["multi_softmax"][0]["num_class"] = 4
MODELS["reg_tweedie"][0]["tweedie_variance_power"] = 1.4
MODELS.update({
    "dart_binary": (dict(BASE, objective="binary:logistic", booster="dart", rate_drop=0.3,
                         skip_drop=0.0, max_depth=4), 25, 0),
    "dart_multi": (dict(BASE, objective="multi:softprob", num_class=4, booster="dart",
                        rate_drop=0.2, max_depth=3), 15, 0),
    "binary_base03": (dict(BASE, objective="binary:logistic", base_score=0.3), 20, 0),
    "reg_base25": (dict(BASE, objective="reg:squarederror", base_score=2.5), 20, 0),
    "poisson_base25": (dict(BASE, objective="count:poisson", base_score=2.5), 20, 0),
    "gamma_base25": (dict(BASE, objective="reg:gamma", base_score=2.5), 20, 0),
    "tweedie_base25": (dict(BASE, objective="reg:tweedie", base_score=2.5), 20, 0),
    "deep12": (dict(BASE, objective="reg:squarederror", max_depth=12, min_child_weight=0,
                    reg_lambda=0.01), 20, 0),
    "depth10": (dict(BASE, objective="reg:squarederror", max_depth=10, min_child_weight=0,
                     reg_lambda=0.01), 10, 0),
    "cat_partition": (dict(BASE, objective="binary:logistic", max_cat_to_onehot=1,
                           max_depth=4), 25, 3),
    "cat_onehot": (dict(BASE, objective="reg:squarederror", max_cat_to_onehot=64,
                        max_depth=4), 25, 3),
    "cat_multi": (dict(BASE, objective="multi:softprob", num_class=4, max_cat_to_onehot=1,
                       max_depth=4), 10, 2),
})
MULTI = {"multi_softprob", "multi_softmax", "dart_multi", "cat_multi"}


def dmatrix(X, n_cat, label=None):
    if n_cat:
        ft = ["c"] * n_cat + ["q"] * (X.shape[1] - n_cat)
        return xgb.DMatrix(X, label=label, missing=np.nan, feature_types=ft,
                           enable_categorical=True)
    return xgb.DMatrix(X, label=label, missing=np.nan)


class Trained:
    def __init__(self, name, booster, path, n_cat, params):
        self.name, self.booster, self.path, self.n_cat, self.params = (
            name, booster, path, n_cat, params)

    def text(self):
        return self.path.read_text()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tree_models")


_CACHE = {}


def trained(name, model_dir):
    """Trains (once per session) and saves the model `name` of MODELS."""
    if name in _CACHE:
        return _CACHE[name]
    params, rounds, n_cat = MODELS[name]
    obj = params["objective"]
    task = TASK_OF[obj]
    seed = zlib.crc32(name.encode()) % 1000
    X = make_x(N_TRAIN, seed, n_cat=n_cat)
    y = make_y(X, task, seed)
    if n_cat:  # make the categories matter
        y = y + (np.isin(X[:, 0], [1, 4, 6]) & (task in ("reg",))).astype(np.float32)
        if task == "binary":
            y = np.where(np.isin(X[:, 0], [1, 4, 6]), 1 - y, y).astype(np.float32)
        if task == "multi":
            y = np.where(np.isin(X[:, 0], [2, 5]), (y + 1) % 4, y).astype(np.float32)
    d = dmatrix(X, n_cat, label=y)
    if task == "rank":
        d.set_group([50] * (N_TRAIN // 50))
    booster = xgb.train(params, d, rounds)
    path = model_dir / f"{name}.json"
    booster.save_model(str(path))
    t = Trained(name, booster, path, n_cat, params)
    _CACHE[name] = t
    return t


def check_x(n_cat, seed=12345, n=N_CHECK):
    X = make_x(n, seed, n_cat=n_cat)
    if n_cat:  # unseen, large and negative categories, which XGBoost sends left
        rng = np.random.default_rng(seed + 5)
        pick = rng.random((n, n_cat)) < 0.03
        X[:, :n_cat] = np.where(pick, rng.choice([-3.0, -1.0, 9.0, 40.0, 1000.0], size=(n, n_cat)),
                                X[:, :n_cat])
    else:  # some extreme values
        X[:100] = np.float32(1e30)
        X[100:200] = np.float32(-1e30)
        X[200:300] = 0.0
    return X


def load(path):
    return softpipe.TreeModel(str(path))


def xgb_margin(t, X):
    return t.booster.predict(dmatrix(X, t.n_cat), output_margin=True)


def xgb_output(t, X):
    return t.booster.predict(dmatrix(X, t.n_cat))


def assert_margins(got, want, what):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert np.all(np.isfinite(got)), f"{what}: non-finite margins"
    diff = np.abs(got - want)
    worst = int(np.argmax(diff.ravel()))
    assert diff.max() <= MARGIN_ATOL, (
        f"{what}: max |margin diff| {diff.max():.3g} at flat index {worst} "
        f"(got {got.ravel()[worst]!r}, want {want.ravel()[worst]!r})")


def assert_outputs(got, want, what, rtol=OUT_RTOL):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-6, err_msg=what)


def edited(t, tmp_path, fn, name="edited.json"):
    """Writes the model text after fn(json dict) or fn(text) (if fn returns a str)."""
    text = t.text()
    out = fn(json.loads(text.replace("NaN", '"NaN"')))
    if isinstance(out, dict):
        out = json.dumps(out).replace('"NaN"', "NaN")
    p = tmp_path / name
    p.write_text(out)
    return p


def gb_model(j):
    gb = j["learner"]["gradient_booster"]
    return gb["gbtree"]["model"] if gb["name"] == "dart" else gb["model"]


def tree_depth(tree, i=0):
    left = tree["left_children"][i]
    if left == -1:
        return 0
    return 1 + max(tree_depth(tree, left), tree_depth(tree, tree["right_children"][i]))


# ----------------------------------------------------------------------------------------- parity

PARITY = [n for n in MODELS if not n.startswith("cat_")]


@pytest.mark.parametrize("name", PARITY)
def test_tree_parity(name, model_dir):
    # Regression test (was a bug): XGBoost 1.7 treats binary:logitraw's base_score as a margin as is
    # (LogisticRaw::ProbToMargin is the identity), so with the default base_score 0.5 every
    # XGBoost margin is 0.5 above softpipe's: serve_tree_load.c applies logit() to it
    # (m.base_margin = -logf(1/bsf - 1) = 0) and also rejects base_score outside (0, 1).
    t = trained(name, model_dir)
    m = load(t.path)
    X = check_x(t.n_cat)
    obj = t.params["objective"]
    assert m.objective == obj
    assert m.num_features == N_FEATURES
    assert m.num_trees == len(gb_model(json.loads(t.text().replace("NaN", "0")))["trees"])

    got = m.predict(X, margin=True)
    want = xgb_margin(t, X)
    assert_margins(got, want, f"{name} margin")
    if name in MULTI:
        k = t.params["num_class"]
        assert m.num_classes == k
        assert got.shape == (len(X), k)
        assert np.array_equal(np.argmax(got, 1), np.argmax(want, 1)), f"{name}: argmax differs"
    else:
        assert m.num_classes == 1
        assert got.shape == (len(X),)

    out = m.predict(X)
    want_out = xgb_output(t, X)
    if obj == "multi:softmax":
        assert out.shape == (len(X),)
        assert np.array_equal(out, want_out), f"{name}: classes differ"
    else:
        assert_outputs(out, want_out, f"{name} output")


def test_tree_inplace_predict_agrees(model_dir):
    """The other XGBoost entry point gives the same margins (dense float32, NaN missing)."""
    t = trained("binary_logistic", model_dir)
    X = check_x(0, seed=99, n=20_000)
    want = t.booster.inplace_predict(X, predict_type="margin", missing=np.nan)
    assert_margins(load(t.path).predict(X, margin=True), want, "inplace margin")


# ---------------------------------------------------------------------------- categorical splits

CATEGORICAL = ["cat_partition", "cat_onehot", "cat_multi"]


def nan_conditions_to_zero(t, tmp_path):
    """XGBoost writes split_conditions of categorical nodes as the bare token NaN; the value is
    unused for those nodes. Replacing it with 0.0 isolates the prediction logic from the
    loader's handling of that token (see test_tree_categorical_parity)."""
    return _write(tmp_path / f"{t.name}_nan0.json", t.text().replace("NaN", "0.0"))


def _write(p, text):
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", CATEGORICAL)
def test_tree_categorical_model_shape(name, model_dir):
    """The trained models really hold the kind of categorical split they are meant to test."""
    t = trained(name, model_dir)
    j = json.loads(t.text().replace("NaN", "0"))
    sizes = [s for tr in gb_model(j)["trees"] for s in tr["categories_sizes"]]
    assert sizes, f"{name}: no categorical split"
    if name == "cat_onehot":
        assert max(sizes) == 1
    else:
        assert max(sizes) > 1, f"{name}: no partition (set) split"


@pytest.mark.parametrize("name", CATEGORICAL)
def test_tree_categorical_parity(name, model_dir):
    # Regression test (was a bug): XGBoost (1.7 and later) saves the split_conditions of categorical nodes as the bare
    # token NaN, e.g. "split_conditions":[NaN,5.878788E-1,...]. serve_json.c rejects it
    # ("not valid JSON: unexpected character"), and serve_tree_load.c would then reject a
    # non-finite split condition even on a categorical node, so no categorical model XGBoost
    # writes can be loaded. Expected: the model loads and matches XGBoost.
    t = trained(name, model_dir)
    m = load(t.path)
    X = check_x(t.n_cat)
    assert_margins(m.predict(X, margin=True), xgb_margin(t, X), f"{name} margin")


@pytest.mark.parametrize("name", CATEGORICAL)
def test_tree_categorical_parity_nan_patched(name, model_dir, tmp_path):
    """The categorical prediction logic itself, with the NaN tokens replaced (see above)."""
    t = trained(name, model_dir)
    m = load(nan_conditions_to_zero(t, tmp_path))
    assert m.layout == "general"
    X = check_x(t.n_cat)
    got = m.predict(X, margin=True)
    want = xgb_margin(t, X)
    assert_margins(got, want, f"{name} margin")
    if name in MULTI:
        assert np.array_equal(np.argmax(got, 1), np.argmax(want, 1))
    assert_outputs(m.predict(X), xgb_output(t, X), f"{name} output")


# -------------------------------------------------------------------------------- base_score, text

@pytest.mark.parametrize("name,base", [
    ("binary_base03", 0.3), ("reg_base25", 2.5), ("poisson_base25", 2.5),
    ("gamma_base25", 2.5), ("tweedie_base25", 2.5)])
def test_tree_base_score_through_link(name, base, model_dir):
    t = trained(name, model_dir)
    j = json.loads(t.text())
    assert float(j["learner"]["learner_model_param"]["base_score"]) == pytest.approx(base)
    m = load(t.path)
    # All features missing: every row follows the same default path; margin - leaves = base
    # margin. Compare the all-NaN row with XGBoost directly as well.
    X = np.full((3, N_FEATURES), np.nan, np.float32)
    assert_margins(m.predict(X, margin=True), xgb_margin(t, X), f"{name} all-NaN margin")
    # An empty model (0 trees) predicts exactly the base margin / base score.
    j2 = json.loads(t.text())
    gm = gb_model(j2)
    gm["trees"], gm["tree_info"] = [], []
    gm["gbtree_model_param"]["num_trees"] = "0"
    p = t.path.parent / f"{name}_empty.json"
    p.write_text(json.dumps(j2))
    e = load(p)
    assert e.num_trees == 0
    margin = e.predict(X, margin=True)
    link = {"binary:logistic": lambda b: np.log(b / (1 - b)),
            "reg:squarederror": lambda b: b}.get(t.params["objective"], np.log)
    np.testing.assert_allclose(margin, np.float32(link(np.float32(base))), rtol=1e-6)
    np.testing.assert_allclose(e.predict(X), base, rtol=1e-6)
    b = xgb.Booster()
    b.load_model(str(p))
    np.testing.assert_allclose(margin, b.predict(xgb.DMatrix(X), output_margin=True), atol=1e-6)


def test_tree_base_score_list_string(model_dir, tmp_path):
    """XGBoost 2.x writes base_score as "[3E-1]"; it must read as 0.3."""
    t = trained("binary_base03", model_dir)
    text = t.text()
    assert '"base_score":"3E-1"' in text
    p = _write(tmp_path / "bs_list.json", text.replace('"base_score":"3E-1"',
                                                      '"base_score":"[3E-1]"'))
    X = check_x(0, n=20_000)
    a = load(t.path).predict(X, margin=True)
    b = load(p).predict(X, margin=True)
    assert np.array_equal(a, b)
    assert_margins(b, xgb_margin(t, X), "list base_score")


# ----------------------------------------------------------------------------------------- layout

def test_tree_layout_deep_is_general(model_dir):
    t = trained("deep12", model_dir)
    j = json.loads(t.text())
    depth = max(tree_depth(tr) for tr in gb_model(j)["trees"])
    assert depth > softpipe_perfect_max(), f"the deep model only reached depth {depth}"
    assert load(t.path).layout == "general"


def test_tree_layout_shallow_is_perfect(model_dir):
    for name in ("depth10", "binary_logistic", "dart_binary", "multi_softprob"):
        t = trained(name, model_dir)
        j = json.loads(t.text())
        assert max(tree_depth(tr) for tr in gb_model(j)["trees"]) <= 10
        assert load(t.path).layout == "perfect", name


def softpipe_perfect_max():
    return 10  # SP_TREE_PERFECT_MAX_DEPTH in include/softpipe/tree.h


# ---------------------------------------------------------------------------------- input handling

@pytest.fixture(scope="module")
def binary(model_dir):
    t = trained("binary_logistic", model_dir)
    return t, load(t.path)


@pytest.fixture(scope="module")
def multi(model_dir):
    t = trained("multi_softprob", model_dir)
    return t, load(t.path)


def test_tree_single_row(binary, multi):
    X = check_x(0, n=64)
    for t, m in (binary, multi):
        batch = m.predict(X)
        bm = m.predict(X, margin=True)
        for i in range(len(X)):
            one = m.predict(X[i])
            assert one.shape == batch.shape[1:]
            assert np.array_equal(one, batch[i])
            assert np.array_equal(m.predict(X[i], margin=True), bm[i])


def test_tree_batch_sizes_agree(binary):
    """Blocks of 8 rows, the threaded path (>= 2048 rows) and row-by-row give the same values."""
    t, m = binary
    X = check_x(0, n=5000)
    full = m.predict(X, margin=True)
    for n in (1, 7, 8, 9, 17, 2047, 2048, 2049):
        assert np.array_equal(m.predict(X[:n], margin=True), full[:n]), n


def test_tree_threads_identical(binary, multi):
    X = check_x(0, n=30_000)
    for t, m in (binary, multi):
        for margin in (False, True):
            a = m.predict(X, margin=margin, threads=1)
            for th in (2, 3, None, 0):
                assert np.array_equal(a, m.predict(X, margin=margin, threads=th)), th


def test_tree_concurrent_python_threads(binary):
    """The GIL is released: several Python threads on one model agree with one thread."""
    import threading
    t, m = binary
    Xs = [check_x(0, seed=s, n=20_000) for s in range(4)]
    want = [m.predict(X, threads=1) for X in Xs]
    got = [None] * 4

    def run(i):
        for _ in range(3):
            got[i] = m.predict(Xs[i], threads=1)

    th = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for x in th:
        x.start()
    for x in th:
        x.join()
    for a, b in zip(got, want):
        assert np.array_equal(a, b)


def test_tree_float64_and_other_dtypes(binary):
    t, m = binary
    X = check_x(0, n=3000)
    ref = m.predict(X, margin=True)
    assert np.array_equal(m.predict(X.astype(np.float64), margin=True), ref)
    assert np.array_equal(m.predict(X.astype(np.float64).tolist(), margin=True), ref)
    Xi = np.clip(np.nan_to_num(X, nan=0.0), -100, 100).round().astype(np.int32)
    assert np.array_equal(m.predict(Xi, margin=True),
                          m.predict(Xi.astype(np.float32), margin=True))
    # a float64 value that rounds to a float32 threshold is compared in float32, as XGBoost does
    assert_margins(m.predict(X.astype(np.float64), margin=True), xgb_margin(t, X), "float64")


def test_tree_non_contiguous(binary):
    t, m = binary
    X = check_x(0, n=4000)
    ref = m.predict(X, margin=True)
    F = np.asfortranarray(X)
    assert np.array_equal(m.predict(F, margin=True), ref)
    wide = np.full((len(X), 2 * N_FEATURES), 7.0, np.float32)
    wide[:, ::2] = X
    assert np.array_equal(m.predict(wide[:, ::2], margin=True), ref)  # column stride 8 bytes
    big = np.full((2 * len(X), N_FEATURES + 5), 7.0, np.float32)
    big[::2, :N_FEATURES] = X
    view = big[::2, :N_FEATURES]  # contiguous rows, row stride != num_features
    assert np.array_equal(m.predict(view, margin=True), ref)
    assert np.array_equal(m.predict(X[::-1], margin=True), ref[::-1])  # negative row stride
    # a single row taken from a strided view
    assert np.array_equal(m.predict(view[5], margin=True), ref[5])
    assert np.array_equal(m.predict(F[5], margin=True), ref[5])
    # extra trailing columns are ignored
    assert np.array_equal(m.predict(big[::2], margin=True), ref)


def test_tree_zero_or_overlapping_row_stride(binary):
    """A broadcast row (row stride 0) and overlapping rows (row stride < one row) are valid NumPy
    views; each row must be read where NumPy says it is."""
    t, m = binary
    X = check_x(0, n=400)
    row = X[7].copy()
    B = np.broadcast_to(row, (300, N_FEATURES))
    assert B.strides[0] == 0
    # Regression test (was a bug): softpipe_tree.c replaced a row stride below num_features (here 0) by the column count,
    # so the broadcast view is read as if it were a 300 x 12 contiguous block: rows 1.. come
    # from past the end of the 12-float buffer (an out-of-bounds read) and differ from row 0.
    want = np.full(300, m.predict(row, margin=True), np.float32)
    assert np.array_equal(m.predict(B, margin=True), want)
    flat = np.ascontiguousarray(X).ravel()
    O = np.lib.stride_tricks.as_strided(flat, shape=(50, N_FEATURES), strides=(4 * 3, 4))
    want = np.array([m.predict(np.array(O[i]), margin=True) for i in range(50)], np.float32)
    assert np.array_equal(m.predict(O, margin=True), want)


def test_tree_torch_input(binary):
    torch = pytest.importorskip("torch")
    t, m = binary
    X = check_x(0, n=3000)
    ref = m.predict(X, margin=True)
    assert np.array_equal(m.predict(torch.from_numpy(X), margin=True), ref)
    assert np.array_equal(m.predict(torch.from_numpy(X).double(), margin=True), ref)
    assert np.array_equal(m.predict(torch.from_numpy(X).t().contiguous().t(), margin=True), ref)
    assert np.array_equal(m.predict(torch.from_numpy(X)[3], margin=True), ref[3])
    assert np.array_equal(m.predict(torch.from_numpy(X).requires_grad_(), margin=True), ref)


def test_tree_empty_batch(binary, multi):
    for t, m in (binary, multi):
        out = m.predict(np.zeros((0, N_FEATURES), np.float32), margin=True)
        assert out.shape[0] == 0


def test_tree_wrong_columns(binary):
    t, m = binary
    for cols in (N_FEATURES - 1, 1):
        with pytest.raises(ValueError) as e:
            m.predict(np.zeros((4, cols), np.float32))
        msg = str(e.value)
        assert str(cols) in msg and str(N_FEATURES) in msg, msg
    with pytest.raises(ValueError) as e:
        m.predict(np.zeros(N_FEATURES - 2, np.float32))  # one short row
    assert str(N_FEATURES - 2) in str(e.value) and str(N_FEATURES) in str(e.value)
    with pytest.raises(ValueError):
        m.predict(np.zeros((2, 3, N_FEATURES), np.float32))


def test_tree_properties(model_dir):
    expect = {
        "binary_logistic": ("binary:logistic", 1, 1, 30),
        "multi_softprob": ("multi:softprob", 4, 4, 120),
        "multi_softmax": ("multi:softmax", 4, 1, 120),
        "rank_pairwise": ("rank:pairwise", 1, 1, 30),
        "dart_multi": ("multi:softprob", 4, 4, 60),
    }
    for name, (obj, k, n_out, n_trees) in expect.items():
        t = trained(name, model_dir)
        m = load(t.path)
        assert (m.objective, m.num_classes, m.num_trees, m.num_features) == \
            (obj, k, n_trees, N_FEATURES), name
        out = m.predict(np.zeros((2, N_FEATURES), np.float32))
        assert out.shape == ((2,) if n_out == 1 else (2, n_out)), name
        assert m.predict(np.zeros((2, N_FEATURES), np.float32), margin=True).shape == \
            ((2,) if k == 1 else (2, k)), name


# ------------------------------------------------------------------------------------ bad models

def test_tree_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        softpipe.TreeModel(str(tmp_path / "nope.json"))
    with pytest.raises((OSError, ValueError)) as e:  # core's sp__read_file: SP_EINVAL
        softpipe.TreeModel(str(tmp_path))  # a folder
    assert str(tmp_path) in str(e.value)


def test_tree_malformed_json(binary, tmp_path):
    t, _ = binary
    text = t.text()
    cut = text[: len(text) // 2]
    p = _write(tmp_path / "cut.json", cut)
    with pytest.raises(softpipe.DataError) as e:
        softpipe.TreeModel(str(p))
    assert "cut.json" in str(e.value)
    # a syntax error on line 3, column 5
    p = _write(tmp_path / "bad.json", '{\n  "learner": {\n    x\n}}')
    with pytest.raises(softpipe.DataError) as e:
        softpipe.TreeModel(str(p))
    assert re.search(r"bad\.json:3:5\b", str(e.value)), str(e.value)
    p = _write(tmp_path / "empty.json", "")
    with pytest.raises(softpipe.DataError):
        softpipe.TreeModel(str(p))
    p = _write(tmp_path / "notmodel.json", '{"hello": [1, 2]}')
    with pytest.raises(softpipe.DataError) as e:
        softpipe.TreeModel(str(p))
    assert "learner" in str(e.value)


def test_tree_child_out_of_range(binary, tmp_path):
    t, _ = binary

    def f(j):
        tr = gb_model(j)["trees"][0]
        i = next(k for k, c in enumerate(tr["left_children"]) if c != -1 and k > 0)
        tr["left_children"][i] = 999
        f.node = i
        return j
    p = edited(t, tmp_path, f)
    with pytest.raises(softpipe.DataError) as e:
        softpipe.TreeModel(str(p))
    msg = str(e.value)
    assert f"trees/0/left_children/{f.node}" in msg and "999" in msg, msg


@pytest.mark.parametrize("field,value,where", [
    ("right_children", 0, "right_children"),            # a cycle back to the root
    ("split_indices", N_FEATURES, "split_indices"),     # feature out of range
    ("split_conditions", "Infinity", "split_conditions"),
])
def test_tree_bad_node_fields(binary, tmp_path, field, value, where):
    t, _ = binary

    def f(j):
        tr = gb_model(j)["trees"][2]
        tr[field][0] = value
        return j
    text = json.dumps(f(json.loads(t.text()))).replace('"Infinity"', "1e39")
    p = _write(tmp_path / "badnode.json", text)
    with pytest.raises(softpipe.DataError) as e:
        softpipe.TreeModel(str(p))
    assert f"trees/2/{where}/0" in str(e.value), str(e.value)


def test_tree_wrong_array_length(binary, tmp_path):
    t, _ = binary

    def f(j):
        gb_model(j)["trees"][1]["default_left"].pop()
        return j
    with pytest.raises(softpipe.DataError) as e:
        softpipe.TreeModel(str(edited(t, tmp_path, f)))
    assert "trees/1/default_left" in str(e.value), str(e.value)


def test_tree_bad_tree_info(multi, tmp_path):
    t, _ = multi

    def f(j):
        gb_model(j)["tree_info"][5] = 4
        return j
    with pytest.raises(softpipe.DataError) as e:
        softpipe.TreeModel(str(edited(t, tmp_path, f)))
    assert "tree_info/5" in str(e.value), str(e.value)


def test_tree_unsupported_objective(binary, tmp_path):
    t, _ = binary
    p = _write(tmp_path / "cox.json",
               t.text().replace('"name":"binary:logistic"', '"name":"survival:cox"'))
    assert "survival:cox" in p.read_text()
    with pytest.raises(softpipe.DataError) as e:
        softpipe.TreeModel(str(p))
    assert "survival:cox" in str(e.value)


def test_tree_gblinear_rejected(tmp_path):
    X = make_x(500, 3, nan_frac=0)
    b = xgb.train({"booster": "gblinear", "objective": "reg:squarederror"},
                  xgb.DMatrix(X, label=make_y(X, "reg", 3)), 3)
    p = tmp_path / "linear.json"
    b.save_model(str(p))
    with pytest.raises(softpipe.DataError) as e:
        softpipe.TreeModel(str(p))
    assert "gblinear" in str(e.value)


def test_tree_bad_base_score(binary, tmp_path):
    t, _ = binary
    for bs in ("1.5E0", "abc", "[5E-1, 3E-1]"):
        p = _write(tmp_path / "bs.json",
                   t.text().replace('"base_score":"5E-1"', f'"base_score":"{bs}"'))
        with pytest.raises(softpipe.DataError) as e:
            softpipe.TreeModel(str(p))
        assert "base_score" in str(e.value), (bs, str(e.value))


def test_tree_binary_model_file(tmp_path, binary):
    """XGBoost's legacy binary format (neither JSON nor UBJSON): a DataError, not a crash; its
    UBJSON format loads."""
    t, _ = binary
    p = tmp_path / "model.ubj"
    t.booster.save_model(str(p))
    assert softpipe.TreeModel(str(p)).num_trees == t.booster.num_boosted_rounds()
    legacy = tmp_path / "model.bin"
    legacy.write_bytes(t.booster.save_raw(raw_format="deprecated"))
    with pytest.raises(softpipe.DataError):
        softpipe.TreeModel(str(legacy))


def test_ubjson_model_equals_json_model(tmp_path):
    """XGBoost's binary .ubj format loads to the same model as its JSON."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((3000, 8)).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    y = rng.integers(0, 3, 3000)
    bst = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 4,
                     "nthread": 1}, xgb.DMatrix(X, label=y), 15)
    bst.save_model(str(tmp_path / "m.ubj"))
    bst.save_model(str(tmp_path / "m.json"))
    a = softpipe.TreeModel(str(tmp_path / "m.ubj"))
    b = softpipe.TreeModel(str(tmp_path / "m.json"))
    assert a.num_trees == b.num_trees == 45 and a.objective == "multi:softprob"
    np.testing.assert_array_equal(a.predict(X, margin=True), b.predict(X, margin=True))
    np.testing.assert_allclose(a.predict(X, margin=True),
                               bst.inplace_predict(X, predict_type="margin"), atol=1e-5)
    (tmp_path / "bad.ubj").write_bytes((tmp_path / "m.ubj").read_bytes()[:500])
    with pytest.raises(softpipe.DataError, match="bad.ubj: byte"):
        softpipe.TreeModel(str(tmp_path / "bad.ubj"))
