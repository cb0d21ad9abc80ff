"""End-to-end tests of `softpipe eval`: .npy, CSV and dataset inputs, JSON and text output,
intervals, quick mode, plots, NaN policy, thresholds, exit codes; values checked against
scikit-learn 1.2."""
import math
import warnings

import numpy as np
import pytest

from conftest import run, run_json

skm = pytest.importorskip("sklearn.metrics")

REL = 1e-12


def close(a, b, rel=REL, what=""):
    a, b = float(a), float(b)
    assert abs(a - b) <= rel * max(1.0, abs(b)), f"{what}: got {a!r}, expected {b!r}"


def sk(f, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*args, **kw)


def binary_data(seed=0, n=1500, ties=True):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.int64)
    s = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.3 * y - 0.5)))
    if ties:
        s = np.round(s, 2)
    w = rng.exponential(size=n) + 0.01
    return y, s, w


def multiclass_data(seed=1, n=900, k=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0
    P = np.exp(logits)
    P /= P.sum(axis=1, keepdims=True)
    return y, P


def sk_binary(y, s, w=None, t=0.5):
    pred = (s >= t).astype(np.int64)
    return {
        "roc_auc": skm.roc_auc_score(y, s, sample_weight=w),
        "average_precision": skm.average_precision_score(y, s, sample_weight=w),
        "log_loss": skm.log_loss(y, s, sample_weight=w, labels=[0, 1]),
        "brier": skm.brier_score_loss(y, s, sample_weight=w),
        "accuracy": skm.accuracy_score(y, pred, sample_weight=w),
        "precision": sk(skm.precision_score, y, pred, sample_weight=w),
        "recall": sk(skm.recall_score, y, pred, sample_weight=w),
        "f1": sk(skm.f1_score, y, pred, sample_weight=w),
    }


def sk_multiclass(y, P):
    pred = P.argmax(axis=1)
    k = P.shape[1]
    out = {
        "accuracy": skm.accuracy_score(y, pred),
        "log_loss": skm.log_loss(y, P, labels=list(range(k))),
        "roc_auc_ovr": skm.roc_auc_score(y, P, multi_class="ovr", average="macro"),
        "roc_auc_ovr_weighted": skm.roc_auc_score(y, P, multi_class="ovr", average="weighted"),
        "top_2_accuracy": skm.top_k_accuracy_score(y, P, k=2, labels=list(range(k))),
    }
    for avg in ("macro", "micro", "weighted"):
        out[f"precision_{avg}"] = sk(skm.precision_score, y, pred, average=avg)
        out[f"recall_{avg}"] = sk(skm.recall_score, y, pred, average=avg)
        out[f"f1_{avg}"] = sk(skm.f1_score, y, pred, average=avg)
    return out


def check_metrics(rep, expected, what=""):
    for name, v in expected.items():
        assert name in rep["metrics"], f"{what}: {name} missing from {sorted(rep['metrics'])}"
        close(rep["metrics"][name]["value"], v, what=f"{what} {name}")


def save_npy(tmp_path, **arrays):
    paths = {}
    for name, a in arrays.items():
        p = tmp_path / f"{name}.npy"
        np.save(p, a)
        paths[name] = p
    return paths


def write_csv(path, columns):
    """Writes a CSV with a header; floats as repr (round-trip exact)."""
    names = list(columns)
    n = len(columns[names[0]])
    lines = [",".join(names)]
    for i in range(n):
        lines.append(",".join(repr(float(columns[c][i])) if np.asarray(columns[c]).dtype.kind == "f"
                              else str(int(columns[c][i])) for c in names))
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------------ npy inputs

def test_help_exits_zero():
    p = run("eval", "--help", check=0)
    assert "usage: softpipe eval" in p.stdout
    for opt in ("--y-true", "--y-score", "--csv", "--dataset", "--ci", "--quick", "--plot",
                "--threshold", "--nan"):
        assert opt in p.stdout
    assert "eval" in run("--help", check=0).stdout


def test_npy_binary_json_matches_sklearn(tmp_path):
    y, s, w = binary_data()
    f = save_npy(tmp_path, y=y, s=s, w=w)
    rep = run_json("eval", "--y-true", f["y"], "--y-score", f["s"])
    assert rep["task"] == "binary" and rep["n_rows"] == len(y) and rep["n_used"] == len(y)
    assert rep["ci"] == "none" and rep["quick"] is False
    check_metrics(rep, sk_binary(y, s), "unweighted")
    (cm,) = rep["confusion_matrix"]
    np.testing.assert_array_equal(cm["matrix"], skm.confusion_matrix(y, (s >= 0.5).astype(int)))
    assert cm["threshold"] == 0.5

    rep = run_json("eval", "--y-true", f["y"], "--y-score", f["s"], "--weights", f["w"])
    check_metrics(rep, sk_binary(y, s, w), "weighted")
    close(rep["weight_total"], w.sum())
    close(rep["weight_positive"], (w * y).sum())


def test_npy_curves_json(tmp_path):
    y, s, _ = binary_data(seed=3, n=700)
    f = save_npy(tmp_path, y=y, s=s)
    rep = run_json("eval", "--y-true", f["y"], "--y-score", f["s"], "--metrics",
                   "roc_auc,roc_curve,pr_curve")
    fpr, tpr, thr = skm.roc_curve(y, s)
    np.testing.assert_allclose(rep["roc_curve"]["fpr"], fpr, rtol=REL, atol=REL)
    np.testing.assert_allclose(rep["roc_curve"]["tpr"], tpr, rtol=REL, atol=REL)
    np.testing.assert_allclose(rep["roc_curve"]["thresholds"], thr, rtol=REL, atol=REL)
    p, r, t = skm.precision_recall_curve(y, s)
    np.testing.assert_allclose(rep["pr_curve"]["precision"], p, rtol=REL, atol=REL)
    np.testing.assert_allclose(rep["pr_curve"]["recall"], r, rtol=REL, atol=REL)
    np.testing.assert_allclose(rep["pr_curve"]["thresholds"], t, rtol=REL, atol=REL)


def test_npy_multiclass_and_regression(tmp_path):
    y, P = multiclass_data()
    f = save_npy(tmp_path, y=y, P=P, PF=np.asfortranarray(P), P32=P.astype(np.float32))
    rep = run_json("eval", "--y-true", f["y"], "--y-score", f["P"], "--top-k", "2")
    assert rep["task"] == "multiclass" and rep["n_classes"] == 3
    check_metrics(rep, sk_multiclass(y, P), "multiclass")
    np.testing.assert_array_equal(rep["confusion_matrix"][0]["matrix"],
                                  skm.confusion_matrix(y, P.argmax(axis=1)))
    # a Fortran-ordered .npy file gives the same numbers
    rep_f = run_json("eval", "--y-true", f["y"], "--y-score", f["PF"], "--top-k", "2")
    assert rep_f["metrics"] == rep["metrics"]
    rep32 = run_json("eval", "--y-true", f["y"], "--y-score", f["P32"], "--metrics",
                     "accuracy,log_loss")
    close(rep32["metrics"]["log_loss"]["value"],
          skm.log_loss(y, P.astype(np.float32), labels=[0, 1, 2]), 1e-6)

    rng = np.random.default_rng(5)
    yr = rng.normal(size=500) * 4
    pr = yr + rng.normal(size=500)
    f = save_npy(tmp_path, yr=yr, pr=pr)
    rep = run_json("eval", "--y-true", f["yr"], "--y-score", f["pr"])
    assert rep["task"] == "regression"
    check_metrics(rep, {"mae": skm.mean_absolute_error(yr, pr),
                        "mse": skm.mean_squared_error(yr, pr),
                        "rmse": math.sqrt(skm.mean_squared_error(yr, pr)),
                        "r2": skm.r2_score(yr, pr),
                        "mape": skm.mean_absolute_percentage_error(yr, pr)}, "regression")


def test_text_output_and_bootstrap_interval(tmp_path):
    y, s, _ = binary_data(seed=4, n=800)
    f = save_npy(tmp_path, y=y, s=s)
    text = run("eval", "--y-true", f["y"], "--y-score", f["s"], check=0).stdout
    for name in ("roc_auc", "average_precision", "log_loss", "brier", "accuracy", "precision",
                 "recall", "f1", "ece", "confusion matrix"):
        assert name in text
    assert "interval" not in text
    p = run("eval", "--y-true", f["y"], "--y-score", f["s"], "--ci", "bootstrap",
            "--replicates", "200", "--seed", "7", check=0)
    assert "95% interval" in p.stdout and "width" in p.stdout
    assert "bootstrap" in p.stdout and "200 replicates" in p.stdout
    auc_line = next(line for line in p.stdout.splitlines() if line.startswith("roc_auc"))
    assert "[" in auc_line and "]" in auc_line

    rep = run_json("eval", "--y-true", f["y"], "--y-score", f["s"], "--ci", "bootstrap",
                   "--replicates", "200", "--seed", "7", "--level", "0.9")
    assert rep["ci"] == "bootstrap" and rep["replicates"] == 200 and rep["level"] == 0.9
    for name, m in rep["metrics"].items():
        assert m["lo"] <= m["value"] <= m["hi"], name
        close(m["width"], m["hi"] - m["lo"])
    # the same seed: the same intervals, for any thread count
    again = run_json("eval", "--y-true", f["y"], "--y-score", f["s"], "--ci", "bootstrap",
                     "--replicates", "200", "--seed", "7", "--level", "0.9", "--threads", "1")
    assert again["metrics"] == rep["metrics"]

    rep = run_json("eval", "--y-true", f["y"], "--y-score", f["s"], "--ci", "delong")
    assert rep["ci"] == "delong"
    assert "lo" in rep["metrics"]["roc_auc"] and "lo" not in rep["metrics"]["f1"]


def test_thresholds(tmp_path):
    y, s, _ = binary_data(seed=6, n=600)
    f = save_npy(tmp_path, y=y, s=s)
    rep = run_json("eval", "--y-true", f["y"], "--y-score", f["s"], "--threshold", "0.3,0.7")
    for t in (0.3, 0.7):
        pred = (s >= t).astype(int)
        close(rep["metrics"][f"f1@{t:g}"]["value"], sk(skm.f1_score, y, pred))
        close(rep["metrics"][f"accuracy@{t:g}"]["value"], skm.accuracy_score(y, pred))
        close(rep["metrics"][f"precision@{t:g}"]["value"], sk(skm.precision_score, y, pred))
        close(rep["metrics"][f"recall@{t:g}"]["value"], sk(skm.recall_score, y, pred))
    assert "f1" not in rep["metrics"]
    assert [c["threshold"] for c in rep["confusion_matrix"]] == [0.3, 0.7]
    text = run("eval", "--y-true", f["y"], "--y-score", f["s"], "--threshold", "0.3,0.7",
               check=0).stdout
    assert "f1@0.3" in text and "f1@0.7" in text and "threshold 0.7" in text
    assert "--threshold" in run("eval", "--y-true", f["y"], "--y-score", f["s"], "--threshold",
                                "0.3,abc", check=2).stderr


def test_distinct_thresholds_distinct_json_keys(tmp_path):
    # BUG (src/eval names thresholded metrics "f1@%g"): --threshold 0.1234567,0.1234568 gives two
    # metrics both named "f1@0.123457"; the JSON object keeps only one of them (and the text
    # table shows two identical names). Expected: distinct names or a usage error.
    y, s, _ = binary_data(seed=7, n=300)
    f = save_npy(tmp_path, y=y, s=s)
    rep = run_json("eval", "--y-true", f["y"], "--y-score", f["s"], "--metrics", "f1",
                   "--threshold", "0.1234567,0.1234568")
    assert len([k for k in rep["metrics"] if k.startswith("f1@")]) == 2, sorted(rep["metrics"])


def test_quick_mode_reports_sample_size(tmp_path):
    rng = np.random.default_rng(8)
    n = 20000
    y = (rng.random(n) < 0.3).astype(np.int64)
    s = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * y - 0.7)))
    f = save_npy(tmp_path, y=y, s=s)
    rep = run_json("eval", "--y-true", f["y"], "--y-score", f["s"], "--quick", "0.1",
                   "--replicates", "200")
    assert rep["quick"] is True and rep["n_rows"] == n
    assert abs(rep["n_used"] - 2000) <= 30
    assert rep["ci"] == "bootstrap"
    m = rep["metrics"]["roc_auc"]
    assert m["lo"] <= m["value"] <= m["hi"]
    text = run("eval", "--y-true", f["y"], "--y-score", f["s"], "--quick", "0.1",
               "--replicates", "200", check=0).stdout
    assert f"quick sample of {rep['n_used']} rows" in text
    rep = run_json("eval", "--y-true", f["y"], "--y-score", f["s"], "--quick", "1500",
                   "--replicates", "50")
    assert abs(rep["n_used"] - 1500) <= 30
    assert "--quick" in run("eval", "--y-true", f["y"], "--y-score", f["s"], "--quick", "-1",
                            check=2).stderr
    # --ci none turns the quick-mode intervals off
    rep = run_json("eval", "--y-true", f["y"], "--y-score", f["s"], "--quick", "0.1", "--ci",
                   "none")
    assert rep["quick"] is True and rep["ci"] == "none" and rep["replicates"] == 0
    assert all("lo" not in m for m in rep["metrics"].values())
    assert "interval" not in run("eval", "--y-true", f["y"], "--y-score", f["s"], "--quick",
                                 "0.1", "--ci", "none", check=0).stdout


# ------------------------------------------------------------------------------ CSV and dataset

def test_csv_columns_binary_and_multiclass(tmp_path):
    y, s, w = binary_data(seed=9, n=400)
    yc, P = multiclass_data(seed=10, n=400)
    csv = write_csv(tmp_path / "preds.csv", {"label": y, "score": s, "wt": w, "cls": yc,
                                             "p0": P[:, 0], "p1": P[:, 1], "p2": P[:, 2]})
    rep = run_json("eval", "--csv", csv, "--y-true", "label", "--y-score", "score")
    check_metrics(rep, sk_binary(y, s), "csv binary")
    rep = run_json("eval", "--csv", csv, "--y-true", "label", "--y-score", "score",
                   "--weights", "wt")
    check_metrics(rep, sk_binary(y, s, w), "csv weighted")
    rep = run_json("eval", "--csv", csv, "--y-true", "cls", "--y-score", "p0,p1,p2",
                   "--top-k", "2")
    assert rep["task"] == "multiclass" and rep["n_classes"] == 3
    check_metrics(rep, sk_multiclass(yc, P), "csv multiclass")
    p = run("eval", "--csv", csv, "--y-true", "label", "--y-score", "nosuch", check=2)
    assert "nosuch" in p.stderr and "score" in p.stderr


def test_dataset_columns(tmp_path):
    y, s, w = binary_data(seed=11, n=300)
    yc, P = multiclass_data(seed=12, n=300)
    csv = write_csv(tmp_path / "preds.csv", {"label": y, "score": s, "wt": w, "cls": yc,
                                             "p0": P[:, 0], "p1": P[:, 1], "p2": P[:, 2]})
    ds = tmp_path / "ds"
    run("pack", csv, "-o", ds, check=0)
    rep = run_json("eval", "--dataset", ds, "--y-true", "label", "--y-score", "score")
    assert rep["n_rows"] == 300
    check_metrics(rep, sk_binary(y, s), "dataset binary")
    rep = run_json("eval", "--dataset", ds, "--y-true", "label", "--y-score", "score",
                   "--weights", "wt")
    check_metrics(rep, sk_binary(y, s, w), "dataset weighted")
    rep = run_json("eval", "--dataset", ds, "--y-true", "cls", "--y-score", "p0,p1,p2",
                   "--top-k", "2")
    check_metrics(rep, sk_multiclass(yc, P), "dataset multiclass")
    assert "nosuch" in run("eval", "--dataset", ds, "--y-true", "label", "--y-score", "nosuch",
                           check=2).stderr
    assert "strings" in run("eval", "--dataset", ds, "--y-true", "key", "--y-score", "score",
                            check=1).stderr
    assert "not both" in run("eval", "--dataset", ds, "--csv", csv, "--y-true", "label",
                             "--y-score", "score", check=2).stderr


# ----------------------------------------------------------------------------------------- plot

def test_plot_writes_png(tmp_path):
    y, s, _ = binary_data(seed=13, n=1000)
    f = save_npy(tmp_path, y=y, s=s)
    png = tmp_path / "curves.png"
    p = run("eval", "--y-true", f["y"], "--y-score", f["s"], "--plot", png, check=0)
    assert str(png) in p.stdout
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 300 and height >= 150
    assert [n for n in tmp_path.iterdir() if n.name.startswith("curves.png.")] == []
    # with an explicit metric list the curves are still added
    png2 = tmp_path / "f1.png"
    rep = run_json("eval", "--y-true", f["y"], "--y-score", f["s"], "--metrics", "f1",
                   "--plot", png2)
    assert png2.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "roc_curve" in rep and "pr_curve" in rep and "reliability" in rep
    # an unwritable path fails with the path named
    bad = tmp_path / "no" / "such" / "dir" / "x.png"
    p = run("eval", "--y-true", f["y"], "--y-score", f["s"], "--plot", bad)
    assert p.returncode != 0 and str(bad.parent) in p.stderr


def test_plot_multiclass_error_message(tmp_path):
    # BUG (cli/cmd_eval.c; python/softpipe/metrics.py's plot= does the same): --plot appends the
    # binary default metrics to the metric list, so on multiclass (or regression) data the error
    # is "metrics: 'roc_auc' is not a multiclass metric (the task is multiclass, inferred from
    # the data; ...)": it blames a metric the user never asked for and does not say that --plot
    # needs a binary task. Expected: exit 2 with a message naming --plot and "binary".
    yc, P = multiclass_data(seed=14, n=100)
    f = save_npy(tmp_path, y=yc, P=P)
    p = run("eval", "--y-true", f["y"], "--y-score", f["P"], "--plot", tmp_path / "m.png")
    assert p.returncode == 2
    assert "plot" in p.stderr and "binary" in p.stderr, p.stderr
    assert not (tmp_path / "m.png").exists()


# ------------------------------------------------------------------------------ errors and NaN

def test_usage_errors_exit_2(tmp_path):
    y, s, _ = binary_data(n=50)
    f = save_npy(tmp_path, y=y, s=s)
    p = run("eval", "--y-true", f["y"], check=2)
    assert "--y-score" in p.stderr
    p = run("eval", "--y-score", f["s"], check=2)
    assert "--y-true" in p.stderr
    p = run("eval", "--y-true", f["y"], "--y-score", f["s"], "--bogus", check=2)
    assert "unknown option" in p.stderr and "--bogus" in p.stderr
    p = run("eval", "--y-true", f["y"], "--y-score", f["s"], "--ci", "jackknife", check=2)
    assert "--ci" in p.stderr
    p = run("eval", "--y-true", f["y"], "--y-score", f["s"], "--metrics", "bogus", check=2)
    assert "bogus" in p.stderr and "roc_auc" in p.stderr
    p = run("eval", "--y-true", f["y"], "--y-score", f["s"], "--level", "1.5", check=2)
    assert "--level" in p.stderr
    p = run("eval", "--y-true", f["y"], "--y-score", f["s"], "--task", "ranking", check=2)
    assert "--task" in p.stderr
    p = run("eval", "--y-true", f["y"], "--y-score", f["s"], "stray", check=2)
    assert "stray" in p.stderr
    p = run("eval", "--y-true", f["y"], "--y-score", check=2)
    assert "--y-score" in p.stderr


def test_nan_scores_error_names_the_row_and_drop_works(tmp_path):
    y, s, _ = binary_data(seed=15, n=400)
    s = s.copy()
    s[17] = np.nan
    s[250] = np.inf
    f = save_npy(tmp_path, y=y, s=s)
    p = run("eval", "--y-true", f["y"], "--y-score", f["s"], check=1)
    assert "row 17" in p.stderr and "s.npy" in p.stderr and "NaN" in p.stderr
    assert p.stdout == ""
    rep = run_json("eval", "--y-true", f["y"], "--y-score", f["s"], "--nan", "drop")
    assert rep["n_dropped"] == 2 and rep["n_used"] == 398 and rep["n_rows"] == 400
    keep = np.isfinite(s)
    check_metrics(rep, sk_binary(y[keep], s[keep]), "nan drop")
    text = run("eval", "--y-true", f["y"], "--y-score", f["s"], "--nan", "drop", check=0).stdout
    assert "2 dropped" in text
    assert "--nan" in run("eval", "--y-true", f["y"], "--y-score", f["s"], "--nan", "keep",
                          check=2).stderr
    # CSV: an empty cell is a NaN too, and its row is named
    csv = write_csv(tmp_path / "t.csv", {"label": y[:30], "score": np.nan_to_num(s[:30])})
    text = csv.read_text().splitlines()
    text[10] = text[10].split(",")[0] + ","
    csv.write_text("\n".join(text) + "\n")
    p = run("eval", "--csv", csv, "--y-true", "label", "--y-score", "score", check=1)
    assert "row 9" in p.stderr and "score" in p.stderr


def test_bad_data_exit_codes(tmp_path):
    y, s, w = binary_data(seed=16, n=100)
    y2 = y.copy()
    y2[23] = 2
    w2 = w.copy()
    w2[5] = -1.0
    f = save_npy(tmp_path, y=y, s=s, y2=y2, w2=w2, short=s[:60])
    p = run("eval", "--y-true", f["y2"], "--y-score", f["s"], "--task", "binary", check=1)
    assert "row 23" in p.stderr and "y2.npy" in p.stderr
    p = run("eval", "--y-true", f["y"], "--y-score", f["s"], "--weights", f["w2"], check=1)
    assert "row 5" in p.stderr and "w2.npy" in p.stderr
    p = run("eval", "--y-true", f["y"], "--y-score", f["short"])
    assert p.returncode != 0 and "short.npy" in p.stderr and "y.npy" in p.stderr
    p = run("eval", "--y-true", f["y"], "--y-score", f["s"], "--weights", f["w2"], "--ci",
            "delong")
    assert p.returncode != 0


def test_missing_file_names_the_path(tmp_path):
    y, s, _ = binary_data(n=50)
    f = save_npy(tmp_path, y=y, s=s)
    missing = tmp_path / "nope.npy"
    p = run("eval", "--y-true", f["y"], "--y-score", missing)
    assert p.returncode != 0 and str(missing) in p.stderr
    p = run("eval", "--csv", tmp_path / "nope.csv", "--y-true", "a", "--y-score", "b")
    assert p.returncode != 0 and "nope.csv" in p.stderr
    p = run("eval", "--dataset", tmp_path / "nods", "--y-true", "a", "--y-score", "b")
    assert p.returncode != 0 and "nods" in p.stderr
    not_npy = tmp_path / "junk.npy"
    not_npy.write_bytes(b"this is not a numpy file at all")
    p = run("eval", "--y-true", f["y"], "--y-score", not_npy)
    assert p.returncode != 0 and "junk.npy" in p.stderr
