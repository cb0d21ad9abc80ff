"""End-to-end tests of `softpipe transform fit|apply`: datasets and CSV tables, .npy and .csv
output, --json reports, exit codes, and the promise that the CLI (the path `softpipe predict`
takes) and Python's softpipe.transform give byte-identical float32 features."""
import csv
import json
import math
import os

import numpy as np
import pytest

from conftest import run, run_json

SPEC = {
    "columns": [
        {"name": "age", "steps": [{"fill": "mean"}, {"clip": [0, 120]}, {"standardize": {}}]},
        {"name": "city", "steps": [{"fill": "most_frequent"}, {"vocabulary": {"max_size": 4}},
                                   {"one_hot": {}}]},
        {"name": "income", "steps": [{"log1p": {}}, {"bucketize": {"quantiles": 5}}]},
        {"name": "income", "as": "income_z", "steps": [{"fill": "median"}, {"standardize": {}}]},
        {"name": "zip", "steps": [{"vocabulary": {}}, {"one_hot": {}}]},
    ]
}
NUMERIC_SPEC = {"columns": [c for c in SPEC["columns"] if c["name"] in ("age", "income")]}


def write_csv(path, n=300, seed=0):
    rng = np.random.default_rng(seed)
    cities = ["paris", "lyon", "nice", "lille", "metz", "pau"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["age", "city", "income", "zip"])
        for i in range(n):
            age = "" if rng.random() < 0.1 else f"{rng.normal(40, 25):.3f}"
            city = "" if rng.random() < 0.05 else cities[int(rng.integers(0, len(cities)))]
            income = "" if rng.random() < 0.05 else f"{rng.lognormal(8, 1):.2f}"
            w.writerow([age, city, income, 75000 + int(rng.integers(0, 5))])


@pytest.fixture
def files(tmp_path):
    data = tmp_path / "data.csv"
    write_csv(data)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    ds = tmp_path / "ds"
    run("pack", data, "-o", ds, check=0)
    return tmp_path, data, spec, ds


def dataset_columns(ds):
    import softpipe
    with softpipe.Dataset(str(ds)) as d:
        return {name: d.column(name) for name in ("age", "city", "income", "zip")}


def test_fit_apply_dataset_and_python_byte_identical(files):
    tmp, data, spec, ds = files
    fitted = tmp / "fitted.json"
    rep = run_json("transform", "fit", spec, ds, "-o", fitted)
    assert rep["command"] == "fit" and rep["rows"] == 300
    assert rep["n_features"] == len(rep["features"]) and rep["features"][0] == "age"
    doc = json.loads(fitted.read_text())
    assert doc["features"] == rep["features"] and doc["fitted"] == {"rows": 300}
    out = tmp / "out.npy"
    rep2 = run_json("transform", "apply", fitted, ds, "-o", out)
    assert rep2["rows"] == 300 and rep2["format"] == "npy"
    cli = np.load(out)
    assert cli.dtype == np.float32 and cli.shape == (300, rep["n_features"])

    from softpipe.transform import Transform, fit
    cols = dataset_columns(ds)
    py = Transform(fitted).apply(cols)
    assert py.dtype == np.float32 and py.shape == cli.shape
    assert py.tobytes() == cli.tobytes()  # the same C code: identical bytes, NaNs included
    # and fitting in Python gives the same fitted file
    assert fit(str(spec), cols).to_json() == fitted.read_text()


def test_apply_csv_output_matches_npy(files):
    tmp, data, spec, ds = files
    fitted = tmp / "fitted.json"
    run("transform", "fit", spec, ds, "-o", fitted, check=0)
    run("transform", "apply", fitted, ds, "-o", tmp / "out.npy", check=0)
    p = run("transform", "apply", fitted, ds, "-o", tmp / "out.csv", check=0)
    assert "300 rows" in p.stdout and "out.csv" in p.stdout
    with open(tmp / "out.csv") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert header == json.loads(fitted.read_text())["features"]
    want = np.load(tmp / "out.npy")
    got = np.array([[math.nan if v == "" else float(v) for v in r] for r in body],
                   dtype=np.float64).astype(np.float32)
    assert got.tobytes() == want.tobytes()  # %.9g reads back to the same float32


def test_csv_table_input(files):
    tmp, data, spec, ds = files
    num = tmp / "num.json"
    num.write_text(json.dumps(NUMERIC_SPEC))
    # numbers straight from the CSV file equal numbers from the dataset packed from it
    run("transform", "fit", num, data, "-o", tmp / "a.json", check=0)
    run("transform", "fit", num, ds, "-o", tmp / "b.json", check=0)
    assert (tmp / "a.json").read_text() == (tmp / "b.json").read_text()
    run("transform", "apply", tmp / "a.json", data, "-o", tmp / "a.npy", check=0)
    run("transform", "apply", tmp / "a.json", ds, "-o", tmp / "b.npy", check=0)
    assert np.load(tmp / "a.npy").tobytes() == np.load(tmp / "b.npy").tobytes()
    # text columns of a table need ingest's sp_table_value; without it the refusal is clear
    p = run("transform", "fit", spec, data, "-o", tmp / "c.json")
    if p.returncode == 0:
        run("transform", "fit", spec, ds, "-o", tmp / "d.json", check=0)
        assert (tmp / "c.json").read_text() == (tmp / "d.json").read_text()
    else:
        assert p.returncode == 1 and 'column "city" holds text' in p.stderr


def test_text_report(files):
    tmp, data, spec, ds = files
    p = run("transform", "fit", spec, ds, "-o", tmp / "f.json", check=0)
    assert "on 300 rows" in p.stdout and "features" in p.stdout and "wrote" in p.stdout


def test_exit_codes_and_messages(files):
    tmp, data, spec, ds = files
    assert run("transform", "--help", check=0).stdout.startswith("usage: softpipe transform")
    assert "expected 'fit' or 'apply'" in run("transform", check=2).stderr
    assert "unknown subcommand" in run("transform", "fix", spec, ds, "-o", "x", check=2).stderr
    assert "missing -o" in run("transform", "fit", spec, ds, check=2).stderr
    run("transform", "fit", spec, check=2)
    run("transform", "fit", tmp / "nope.json", ds, "-o", tmp / "f.json", check=2)
    bad = tmp / "bad.json"
    bad.write_text('{"columns": [{"name": "age", "steps": [{"log1p": {}}, {"vocabulary": {}}]}]}')
    p = run("transform", "fit", bad, ds, "-o", tmp / "f.json", check=1)
    assert 'columns[0] ("age"): steps[0] (log1p): log1p needs numbers' in p.stderr
    # applying a spec that was never fitted
    p = run("transform", "apply", spec, ds, "-o", tmp / "o.npy", check=2)
    assert "not a fitted transform" in p.stderr
    run("transform", "fit", spec, ds, "-o", tmp / "f.json", check=0)
    assert ".npy or .csv" in run("transform", "apply", tmp / "f.json", ds, "-o", tmp / "o.txt",
                                 check=2).stderr
    # a column missing from the data, and a bad value, named with the row
    miss = tmp / "miss.json"
    miss.write_text('{"columns": [{"name": "weight", "steps": []}]}')
    p = run("transform", "fit", miss, ds, "-o", tmp / "m.json", check=1)
    assert 'no column "weight"' in p.stderr
    neg = tmp / "neg.csv"
    neg.write_text("income\n3\n-4\n")
    fl = tmp / "fl.json"
    fl.write_text('{"columns": [{"name": "income", "steps": [{"log1p": {}}]}]}')
    p = run("transform", "fit", fl, neg, "-o", tmp / "n.json", check=1)
    assert f"{neg}:3: column \"income\"" in p.stderr and "log1p of -4" in p.stderr
    assert not os.path.exists(tmp / "n.json")
