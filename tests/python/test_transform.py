"""softpipe.transform: fit statistics and apply() checked against a NumPy reference
implementation of every step, missing values, vocabularies, the JSON round trip, errors, and
thread-count independence."""
import json
import math

import numpy as np
import pytest

import softpipe
from softpipe.transform import Transform, fit

SPEC = {
    "columns": [
        {"name": "age", "steps": [{"fill": "mean"}, {"clip": [0, 120]}, {"standardize": {}}]},
        {"name": "city", "steps": [{"fill": "most_frequent"},
                                   {"vocabulary": {"max_size": 5, "min_count": 2}},
                                   {"one_hot": {}}]},
        {"name": "income", "steps": [{"log1p": {}}, {"bucketize": {"quantiles": 10}}]},
        {"name": "income", "as": "income_b",
         "steps": [{"fill": "median"}, {"bucketize": {"boundaries": [10, 100, 1000]}},
                   {"one_hot": {}}]},
        {"name": "zip", "steps": [{"vocabulary": {"max_size": 3}}]},
        {"name": "score", "steps": []},
    ]
}


def make_data(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 20, n)
    age[rng.random(n) < 0.1] = np.nan
    cities = np.array(["paris", "lyon", "nice", "lille", "metz", "brest", "pau", "nantes"])
    p = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.1, 0.04, 0.01])
    city = [str(c) for c in rng.choice(cities, n, p=p)]
    for i in rng.choice(n, n // 20, replace=False):
        city[i] = None
    income = rng.lognormal(8, 1.5, n)
    income[rng.random(n) < 0.05] = np.nan
    zip_ = rng.integers(75000, 75010, n)
    score = rng.random(n)
    return {"age": age, "city": city, "income": income, "zip": zip_, "score": score}


def np_quantile_bounds(x, k):
    x = x[~np.isnan(x)]
    q = np.quantile(x, np.arange(1, k) / k)
    out = []
    for b in q:
        if not out or b > out[-1]:
            out.append(b)
    return np.array(out)


def vocab_ref(values, max_size=0, min_count=1):
    counts = {}
    for v in values:
        if v is not None:
            counts[v] = counts.get(v, 0) + 1
    items = sorted(((-c, v.encode()), v) for v, c in counts.items() if c >= min_count)
    vals = [v for _, v in items]
    return vals[:max_size] if max_size else vals


def reference(data, fitted):
    """A NumPy implementation of apply from the fitted statistics (float64, then float32)."""
    cols = []
    for c in fitted["columns"]:
        x = data[c["name"]]
        text = c["type"] == "string"
        if text:
            vals = [None if v is None else str(v) for v in x]
        else:
            x = np.asarray(x, dtype=np.float64).copy()
        one_hot = None
        for step in c["steps"]:
            (kind, arg), = step.items()
            if kind == "fill":
                if text:
                    vals = [arg["value"] if v is None else v for v in vals]
                else:
                    x[np.isnan(x)] = arg["value"]
            elif kind == "clip":
                lo = -np.inf if arg[0] is None else arg[0]
                hi = np.inf if arg[1] is None else arg[1]
                x = np.where(np.isnan(x), x, np.clip(x, lo, hi))
            elif kind == "log1p":
                x = np.log1p(x)
            elif kind == "standardize":
                x = (x - arg["mean"]) / (arg["std"] if arg["std"] > 0 else 1.0)
            elif kind == "bucketize":
                b = np.array(arg["boundaries"])
                x = np.where(np.isnan(x), np.nan, np.searchsorted(b, x, side="right").astype(float))
                one_hot = len(b) + 1
            elif kind == "vocabulary":
                index = {v: i for i, v in enumerate(arg["values"])}
                x = np.array([np.nan if v is None else index.get(v, len(index)) for v in vals],
                             dtype=np.float64)
                one_hot = len(index) + 1
            elif kind == "one_hot":
                m = np.zeros((len(x), one_hot))
                ok = ~np.isnan(x)
                m[np.arange(len(x))[ok], x[ok].astype(int)] = 1
                m[~ok] = np.nan
                x = m
        cols.append(x.reshape(len(x), -1))
    return np.hstack(cols).astype(np.float32)


def test_fit_statistics_match_numpy():
    data = make_data()
    tf = fit(SPEC, data)
    assert tf.fitted and tf.fit_rows == 2000
    d = tf.to_dict()
    age = data["age"]
    mean = np.nanmean(age)
    filled = np.clip(np.where(np.isnan(age), mean, age), 0, 120)
    steps = d["columns"][0]["steps"]
    assert steps[0]["fill"]["value"] == pytest.approx(mean, rel=1e-12)
    assert steps[2]["standardize"]["mean"] == pytest.approx(filled.mean(), rel=1e-12)
    assert steps[2]["standardize"]["std"] == pytest.approx(filled.std(), rel=1e-12)
    # vocabulary after the most_frequent fill
    city = data["city"]
    top = vocab_ref(city)[0]
    filled_city = [top if v is None else v for v in city]
    assert d["columns"][1]["steps"][0]["fill"]["value"] == top
    assert d["columns"][1]["steps"][1]["vocabulary"]["values"] == vocab_ref(filled_city, 5, 2)
    # quantile boundaries of log1p(income): NumPy's linear rule, exactly. (The logs come from
    # the C library's log1p, as math.log1p; NumPy's own log1p differs in the last bit for some
    # values.)
    b = d["columns"][2]["steps"][1]["bucketize"]["boundaries"]
    logs = np.array([math.log1p(v) for v in data["income"]])
    np.testing.assert_array_equal(b, np_quantile_bounds(logs, 10))
    med = np.nanmedian(data["income"])
    assert d["columns"][3]["steps"][0]["fill"]["value"] == med
    # integer ids as text, most frequent first
    zips = [str(z) for z in data["zip"]]
    assert d["columns"][4]["steps"][0]["vocabulary"]["values"] == vocab_ref(zips, 3)


def test_apply_matches_numpy_reference():
    data = make_data()
    tf = fit(SPEC, data)
    got = tf.apply(data)
    assert got.dtype == np.float32 and got.shape == (2000, tf.n_features)
    want = reference(data, tf.to_dict())
    np.testing.assert_allclose(got, want, rtol=2e-7, atol=1e-7, equal_nan=True)
    # NaN exactly where expected: age is filled, the income buckets are not
    assert not np.isnan(got[:, 0]).any()
    inc = tf.features.index("income")
    np.testing.assert_array_equal(np.isnan(got[:, inc]), np.isnan(data["income"]))
    # one-hot rows sum to 1
    city_cols = [i for i, f in enumerate(tf.features) if f.startswith("city")]
    np.testing.assert_array_equal(got[:, city_cols].sum(axis=1), 1)


def test_features_names_and_order():
    data = make_data()
    tf = fit(SPEC, data)
    vocab = tf.to_dict()["columns"][1]["steps"][1]["vocabulary"]["values"]
    assert tf.features == (["age"] + [f"city={v}" for v in vocab] + ["city:oov", "income"] +
                           [f"income_b[{k}]" for k in range(4)] + ["zip", "score"])
    assert tf.to_dict()["features"] == tf.features
    assert tf.inputs == [("age", False), ("city", True), ("income", False), ("zip", True),
                         ("score", False)]


def test_roundtrip_file_and_dataframe_like(tmp_path):
    data = make_data(500, seed=3)
    out = tmp_path / "fitted.json"
    tf = Transform.fit(SPEC, data, out_path=out)
    again = Transform(out)
    assert again.features == tf.features
    a, b = tf.apply(data), again.apply(data)
    assert a.tobytes() == b.tobytes()
    # a spec file, JSON text, another Transform; extra columns ignored; lists work
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(SPEC))
    for spec in (str(spec_path), spec_path, json.dumps(SPEC), Transform(json=json.dumps(SPEC))):
        t = fit(spec, dict(data, extra=np.zeros(500)))
        assert t.apply(data).tobytes() == a.tobytes()
    lists = {k: list(v) for k, v in data.items()}
    assert tf.apply(lists).tobytes() == a.tobytes()
    # readable JSON
    text = out.read_text()
    assert '"features": [' in text and '"standardize": {"mean": ' in text


def test_threads_identical():
    data = make_data(150000, seed=5)
    tf = fit(SPEC, data, threads=4)
    a = tf.apply(data, threads=1)
    b = tf.apply(data, threads=8)
    assert a.tobytes() == b.tobytes()


def test_text_columns_accept_arrays_and_nan():
    spec = {"columns": [{"name": "c", "steps": [{"vocabulary": {}}, {"one_hot": {}}]}]}
    tf = fit(spec, {"c": np.array(["b", "a", "b"])})
    assert tf.features == ["c=b", "c=a", "c:oov"]
    out = tf.apply({"c": np.array(["a", None, float("nan"), "zz"], dtype=object)})
    np.testing.assert_array_equal(out[0], [0, 1, 0])
    assert np.isnan(out[1]).all() and np.isnan(out[2]).all()
    np.testing.assert_array_equal(out[3], [0, 0, 1])


def test_errors():
    data = make_data(100)
    with pytest.raises(softpipe.DataError, match="unknown step \"stanardize\""):
        fit({"columns": [{"name": "a", "steps": [{"stanardize": {}}]}]}, data)
    spec_only = Transform(json=json.dumps(SPEC))
    assert not spec_only.fitted and spec_only.features == []
    with pytest.raises(ValueError, match="not fitted"):
        spec_only.apply(data)
    tf = fit(SPEC, data)
    bad = dict(data, income=np.array([-5.0] + [1.0] * 99))
    with pytest.raises(softpipe.DataError, match=r"row 0: column \"income\": log1p of -5"):
        tf.apply(bad)
    with pytest.raises(softpipe.DataError, match=r"no input column \"zip\""):
        tf.apply({k: v for k, v in data.items() if k != "zip"})
    with pytest.raises(softpipe.DataError, match=r"column \"age\": the input holds text"):
        tf.apply(dict(data, age=["x"] * 100))
    with pytest.raises(ValueError, match="rows"):
        tf.apply(dict(data, age=np.zeros(5)))
    with pytest.raises(softpipe.DataError, match=r"steps\[0\] \(fill\): no values to fit"):
        fit(SPEC, dict(data, age=np.full(100, np.nan)))
    with pytest.raises(FileNotFoundError):
        Transform("/nonexistent/fitted.json")
