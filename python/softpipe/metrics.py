"""softpipe.metrics: every evaluation metric from one sorted pass, with confidence intervals.

    >>> from softpipe.metrics import evaluate, delong_test
    >>> r = evaluate(y_true, y_score)                       # binary: 0/1 labels, one score per row
    >>> r["roc_auc"], r["log_loss"], r["f1"]
    >>> r = evaluate(y_true, y_score, ci="bootstrap", replicates=1000, seed=0)
    >>> r["ci"]["roc_auc"]                                  # (low, high) at level=0.95
    >>> r = evaluate(y_true, y_score, quick=0.01)           # 1 % stratified sample, with intervals
    >>> delong_test(y_true, scores_a, scores_b)["p_value"]

Inputs are NumPy arrays, torch tensors (CPU) or anything with the buffer protocol; they are read
in place, never copied (integer score arrays are converted once). The definitions follow
scikit-learn 1.2 and match it to 1e-12 on float64 input; see ``softpipe/eval.h`` for each one.
"""

import warnings as _warnings

import numpy as _np

from . import _softpipe

__all__ = ["evaluate", "delong_test", "poisson_weights", "EvalWarning"]

_TASKS = {None: 0, "auto": 0, "binary": 1, "multiclass": 2, "regression": 3}
_CI = {None: 0, "none": 3, "bootstrap": 1, "delong": 2}
_NAN = {"error": 0, "drop": 1}


class EvalWarning(UserWarning):
    """A metric is undefined or was skipped (the text says why); like scikit-learn's
    UndefinedMetricWarning."""


def _as_buffer(x, name):
    """A zero-copy buffer view of x: NumPy arrays as they are, CPU torch tensors through
    .numpy() (which shares memory), other sequences through numpy.asarray."""
    if x is None:
        return None
    if isinstance(x, _np.ndarray):
        return x
    mod = type(x).__module__ or ""
    if mod.startswith("torch"):
        if getattr(x, "device", None) is not None and x.device.type != "cpu":
            raise ValueError(f"{name}: tensor is on {x.device}; move it to the CPU first "
                             "(evaluation reads host memory)")
        t = x.detach()
        if t.dtype.is_floating_point and str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    try:
        memoryview(x)
        return x
    except TypeError:
        return _np.asarray(x)


def _f64(raw):
    return _np.frombuffer(raw, dtype=_np.float64)


def evaluate(y_true, y_score, metrics=None, sample_weight=None, threshold=0.5, ci=None,
             replicates=1000, level=0.95, seed=0, quick=None, *, task=None, nan="error",
             n_threads=0, ece_bins=15, ece_equal_mass=False, top_k=5, plot=None,
             plot_title=None):
    """Evaluates predictions and returns a dict.

    y_true: labels, n rows (0/1 for binary, 0..k-1 for multiclass, real for regression).
    y_score: n scores (binary, regression) or an n x k matrix (multiclass).
    metrics: names (a list or "a,b"), default the task's standard set; curves on request:
        "roc_curve", "pr_curve", "reliability"; "confusion_matrix" is in the default set.
    threshold: one number or a list (binary thresholded metrics; with several, keys are
        "f1@0.3" ...). A row is predicted positive when its score >= threshold.
    ci: None (none, but bootstrap in quick mode), "none", "bootstrap" (Poisson bootstrap
        percentile intervals for every metric, identical for any thread count) or "delong"
        (ROC AUC). replicates, level and seed tune them.
    quick: None, a fraction in (0, 1) or a row count: evaluate a stratified sample; intervals are
        then on by default (bootstrap) and result["info"]["n_used"] is the sample size.
    task: None/"auto", "binary", "multiclass" or "regression".
    nan: "error" (NaN/inf is an error naming the first bad row) or "drop" (dropped, counted in
        result["info"]["n_dropped"]).
    plot: a PNG path: draws the ROC, precision-recall and reliability curves (binary tasks);
        the curves are then also in the result.

    Returns {metric: value, ..., "ci": {metric: (low, high)}, "replicates": {metric: array},
    "roc_curve": {"fpr", "tpr", "thresholds"}, "pr_curve": {"precision", "recall",
    "thresholds"}, "reliability": {"confidence", "accuracy", "weight"}, "confusion_matrix":
    array (or a list, one per threshold), "info": {...}, "warnings": [...]}; keys that were not
    asked for are absent. Undefined metrics are NaN with an EvalWarning saying why.
    """
    if task not in _TASKS:
        raise ValueError(f"task: {task!r} is not one of auto, binary, multiclass, regression")
    if ci not in _CI:
        raise ValueError(f"ci: {ci!r} is not one of None, 'none', 'bootstrap', 'delong'")
    if nan not in _NAN:
        raise ValueError(f"nan: {nan!r} is not 'error' or 'drop'")
    if isinstance(metrics, (list, tuple)):
        metrics = ",".join(metrics)
    thresholds = list(threshold) if isinstance(threshold, (list, tuple, _np.ndarray)) else [threshold]
    raw = _softpipe._eval(
        _as_buffer(y_true, "y_true"), _as_buffer(y_score, "y_score"),
        _as_buffer(sample_weight, "sample_weight"), task=_TASKS[task], metrics=metrics,
        thresholds=[float(t) for t in thresholds], ci=_CI[ci], replicates=int(replicates),
        level=float(level), seed=int(seed), quick=float(quick or 0), nan=_NAN[nan],
        n_threads=int(n_threads), ece_bins=int(ece_bins), ece_equal_mass=bool(ece_equal_mass),
        top_k=int(top_k), plot=None if plot is None else str(plot),
        plot_title=plot_title)
    out = {}
    intervals, reps = {}, {}
    for name, value, lo, hi, rep in raw["metrics"]:
        out[name] = value
        if not (_np.isnan(lo) and _np.isnan(hi)):
            intervals[name] = (lo, hi)
        if rep is not None:
            reps[name] = _f64(rep)
    if intervals:
        out["ci"] = intervals
    if reps:
        out["replicates"] = reps
    curves = raw["curves"]
    if "roc" in curves:
        x, y, t = curves["roc"]
        out["roc_curve"] = {"fpr": _f64(x), "tpr": _f64(y), "thresholds": _f64(t)}
    if "pr" in curves:
        x, y, t = curves["pr"]
        out["pr_curve"] = {"precision": _f64(y), "recall": _f64(x), "thresholds": _f64(t)}
    if "reliability" in curves:
        x, y, t = curves["reliability"]
        out["reliability"] = {"confidence": _f64(x), "accuracy": _f64(y), "weight": _f64(t)}
    if raw["confusion"]:
        mats = [_f64(b).reshape(k, k) for k, b in raw["confusion"]]
        out["confusion_matrix"] = mats[0] if len(mats) == 1 else mats
    out["info"] = raw["info"]
    out["warnings"] = raw["warnings"]
    for w in raw["warnings"]:
        _warnings.warn(w, EvalWarning, stacklevel=2)
    return out


def delong_test(y_true, score_a, score_b, *, n_threads=0):
    """The paired DeLong test of two models' ROC AUC on the same rows.

    Returns {"auc_a", "auc_b", "diff", "var_a", "var_b", "cov", "z", "p_value" (two-sided),
    "n_positive", "n_negative"}.
    """
    return _softpipe._delong_test(_as_buffer(y_true, "y_true"), _as_buffer(score_a, "score_a"),
                                  _as_buffer(score_b, "score_b"), n_threads=int(n_threads))


def poisson_weights(seed, replicate, n, first_row=0):
    """The Poisson(1) bootstrap counts that evaluate(ci="bootstrap", seed=seed) gives rows
    first_row .. first_row + n - 1 in replicate `replicate` (uint32 array): evaluating with
    sample_weight=these reproduces that replicate exactly, with any tool."""
    return _np.frombuffer(_softpipe._poisson_weights(int(seed), int(replicate), int(n),
                                                     int(first_row)), dtype=_np.uint32)
