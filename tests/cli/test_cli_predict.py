"""End-to-end tests of `softpipe predict`: XGBoost models over .npy, CSV and dataset inputs,
.npy and CSV outputs, margins, multiclass, JSON summary and the errors a user can make; the
predictions are checked against XGBoost's own."""
import json

import numpy as np
import pytest

from conftest import run

xgb = pytest.importorskip("xgboost")


def train(tmp_path, objective="binary:logistic", n=2000, f=6, rounds=20, num_class=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, f)).astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan
    if num_class:
        y = rng.integers(0, num_class, n)
    else:
        y = (np.nan_to_num(X[:, 0]) + rng.standard_normal(n) > 0).astype(int)
    params = {"objective": objective, "max_depth": 4, "eta": 0.3, "nthread": 1, "seed": seed}
    if num_class:
        params["num_class"] = num_class
    bst = xgb.train(params, xgb.DMatrix(X, label=y), rounds)
    path = tmp_path / "model.json"
    bst.save_model(str(path))
    return bst, path, X


def test_npy_in_npy_out_matches_xgboost(tmp_path):
    bst, model, X = train(tmp_path)
    np.save(tmp_path / "X.npy", X)
    p = run("predict", model, tmp_path / "X.npy", "-o", tmp_path / "p.npy", check=0)
    assert "predicted 2000 rows" in p.stdout
    got = np.load(tmp_path / "p.npy")
    assert got.dtype == np.float32 and got.shape == (2000,)
    np.testing.assert_allclose(got, bst.inplace_predict(X), rtol=0, atol=1e-6)
    run("predict", model, tmp_path / "X.npy", "-o", tmp_path / "m.npy", "--margin", check=0)
    margin = np.load(tmp_path / "m.npy")
    np.testing.assert_allclose(margin, bst.inplace_predict(X, predict_type="margin"), atol=1e-5)


def test_float64_input_and_csv_output(tmp_path):
    bst, model, X = train(tmp_path, objective="reg:squarederror")
    np.save(tmp_path / "X64.npy", X.astype(np.float64))
    run("predict", model, tmp_path / "X64.npy", "-o", tmp_path / "p.csv", check=0)
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "prediction" and len(lines) == 2001
    got = np.array([float(v) for v in lines[1:]], dtype=np.float32)
    np.testing.assert_allclose(got, bst.inplace_predict(X), rtol=1e-6, atol=1e-6)


def test_multiclass_outputs_one_column_per_class(tmp_path):
    bst, model, X = train(tmp_path, objective="multi:softprob", num_class=3)
    np.save(tmp_path / "X.npy", X)
    out = json.loads(run("predict", model, tmp_path / "X.npy", "-o", tmp_path / "p.npy", "--json",
                         check=0).stdout)
    assert out["rows"] == 2000 and out["outputs"] == 3 and out["objective"] == "multi:softprob"
    got = np.load(tmp_path / "p.npy")
    assert got.shape == (2000, 3)
    np.testing.assert_allclose(got, bst.inplace_predict(X), atol=1e-6)
    assert (got.argmax(1) == bst.inplace_predict(X).argmax(1)).all()


def test_csv_input_with_named_columns(tmp_path):
    bst, model, X = train(tmp_path, n=300)
    header = "id,f0,f1,f2,f3,f4,f5,note"
    rows = []
    for i, r in enumerate(X):
        cells = ["" if np.isnan(v) else repr(float(v)) for v in r]
        rows.append(",".join([str(i)] + cells + ["x"]))
    (tmp_path / "in.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    # 'id' is numeric too: all numeric columns are 7, the model wants 6
    p = run("predict", model, tmp_path / "in.csv", "-o", tmp_path / "p.npy", check=1)
    assert "7 feature columns, the model expects 6" in p.stderr and "--columns" in p.stderr
    run("predict", model, tmp_path / "in.csv", "-o", tmp_path / "p.npy",
        "--columns", "f0,f1,f2,f3,f4,f5", check=0)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), bst.inplace_predict(X), atol=1e-6)


def test_dataset_input(tmp_path):
    bst, model, X = train(tmp_path, n=200, f=3)
    X = np.nan_to_num(X)  # the CSV writer below keeps numbers only
    lines = ["a,b,c"] + [",".join(repr(float(v)) for v in r) for r in X]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    run("pack", tmp_path / "t.csv", "-o", tmp_path / "ds", check=0)
    run("predict", model, tmp_path / "ds", "-o", tmp_path / "p.npy", "--columns", "a,b,c", check=0)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), bst.inplace_predict(X), atol=1e-6)


def test_errors(tmp_path):
    bst, model, X = train(tmp_path)
    np.save(tmp_path / "X.npy", X[:, :5])
    p = run("predict", model, tmp_path / "X.npy", "-o", tmp_path / "p.npy", check=1)
    assert "5 feature columns, the model expects 6" in p.stderr
    assert not (tmp_path / "p.npy").exists()
    p = run("predict", tmp_path / "missing.json", tmp_path / "X.npy", "-o", tmp_path / "p.npy")
    assert p.returncode != 0 and "missing.json" in p.stderr
    (tmp_path / "bad.json").write_text('{"learner": {"learner_model_param": {"num_feature": "6"')
    p = run("predict", tmp_path / "bad.json", tmp_path / "X.npy", "-o", tmp_path / "p.npy", check=1)
    assert "bad.json:1:" in p.stderr
    run("predict", model, tmp_path / "X.npy", check=2)                      # no -o
    run("predict", model, tmp_path / "X.npy", "-o", tmp_path / "p.txt", check=2)
    run("predict", model, check=2)
    run("predict", "--bogus", check=2)
    assert run("predict", "--help", check=0).stdout.startswith("usage: softpipe predict")


def test_transform_through_predict_equals_python(tmp_path):
    """One definition for training and serving: features made by softpipe.Transform in Python
    train the model; `softpipe predict --transform` on the raw CSV gives byte-identical
    predictions to TreeModel.predict on the Python features."""
    import softpipe
    from softpipe.transform import fit

    rng = np.random.default_rng(3)
    n = 400
    age = rng.uniform(15, 90, n)
    age[rng.random(n) < 0.1] = np.nan
    cities = np.array(["paris", "lyon", "nice", "lille"])[rng.integers(0, 4, n)]
    income = rng.lognormal(10, 1, n)
    spec = {"columns": [
        {"name": "age", "steps": [{"fill": "median"}, {"clip": [18, 80]}, {"standardize": {}}]},
        {"name": "city", "steps": [{"vocabulary": {"max_size": 3}}, {"one_hot": {}}]},
        {"name": "income", "steps": [{"log1p": {}}, {"bucketize": {"quantiles": 4}}]},
    ]}
    data = {"age": age, "city": list(cities), "income": income}
    tf = fit(spec, data, out_path=str(tmp_path / "fitted.json"))
    X = tf.apply(data)
    y = ((np.nan_to_num(age, nan=50) > 50) ^ (cities == "nice")).astype(int)
    bst = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                    xgb.DMatrix(X, label=y), 10)
    bst.save_model(str(tmp_path / "model.json"))
    lines = ["age,city,income"] + [
        f"{'' if np.isnan(a) else repr(float(a))},{c},{repr(float(i))}"
        for a, c, i in zip(age, cities, income)]
    (tmp_path / "raw.csv").write_text("\n".join(lines) + "\n")
    run("predict", tmp_path / "model.json", tmp_path / "raw.csv", "-o", tmp_path / "p.npy",
        "--transform", tmp_path / "fitted.json", check=0)
    got = np.load(tmp_path / "p.npy")
    want = softpipe.TreeModel(str(tmp_path / "model.json")).predict(X)
    assert got.tobytes() == want.tobytes()
    np.testing.assert_allclose(got, bst.inplace_predict(X), atol=1e-6)
    # the wrong transform for the model: a feature count that says both
    spec2 = {"columns": spec["columns"][:1]}
    fit(spec2, data, out_path=str(tmp_path / "small.json"))
    p = run("predict", tmp_path / "model.json", tmp_path / "raw.csv", "-o", tmp_path / "q.npy",
            "--transform", tmp_path / "small.json", check=1)
    assert "1 feature columns, the model expects" in p.stderr
