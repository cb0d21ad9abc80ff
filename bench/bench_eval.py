#!/usr/bin/python3
"""Evaluation benchmark: softpipe.metrics.evaluate against scikit-learn 1.2 in the same run.

    /usr/bin/python3 bench/bench_eval.py [--n 10000000] [--boot-n 1000000] [--repeat 3]
                                          [--only seven,bootstrap,memory,quick] [--json FILE]

Data (the recipe every eval number uses; scripts/gen_preds.py writes the same arrays as .npy):
n rows, y ~ Bernoulli(0.3) as int64, score = sigmoid(N(0, 1) + 1.5 y - 0.7) as float64, from
numpy's default_rng(seed). Scores are continuous, so nearly every score is its own threshold,
which is the expensive case for curves.

What it measures, softpipe and scikit-learn alternating, each repeated R times (the machines are
noisy, so only the ratio is a claim):

  (a) seven     the seven metrics of anchors.md at n (default 10M): roc_auc, average_precision,
                log_loss, brier, f1 and accuracy at 0.5, precision_recall_curve. scikit-learn:
                seven calls (what a user writes); softpipe: one evaluate(metrics=...) call, which
                also returns the whole PR curve. Goal: >= 15x. The values are checked equal to
                1e-12 on every run.
  (b) bootstrap a 1,000-replicate bootstrap interval of ROC AUC at n = 1M: softpipe
                evaluate(ci="bootstrap", replicates=1000) against the scikit-learn loop (resample
                n row indices with replacement, roc_auc_score) timed over 20 replicates and scaled
                by 50. Goals: softpipe <= 5 s on this 2-core machine and >= 50x the loop.
  (c) memory    peak resident memory added by the seven-metric evaluate at n, measured in a fresh
                process (/proc/self/status VmHWM after resetting it through clear_refs), divided
                by the bytes of the input arrays. Goal: <= 3x.
  (d) quick     context: quick=0.01 (a 1 % stratified sample with a 1,000-replicate bootstrap
                interval) against the full evaluation at n, without and with the same interval.

softpipe's Python module comes from $SOFTPIPE_PYTHONPATH or build/python.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.environ.get("SOFTPIPE_PYTHONPATH", os.path.join(ROOT, "build", "python")))

import numpy as np  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from softpipe.metrics import evaluate  # noqa: E402

SEVEN = "roc_auc,average_precision,log_loss,brier,f1,accuracy,pr_curve"


def make_data(n, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    s = 1.0 / (1.0 + np.exp(-(rng.standard_normal(n) + 1.5 * y - 0.7)))
    return y, s


def summary(xs):
    return "%.3f s [%.3f..%.3f]" % (statistics.median(xs), min(xs), max(xs))


def sklearn_seven(y, s):
    pred = s >= 0.5
    out = {
        "roc_auc": skm.roc_auc_score(y, s),
        "average_precision": skm.average_precision_score(y, s),
        "log_loss": skm.log_loss(y, s),
        "brier": skm.brier_score_loss(y, s),
        "f1": skm.f1_score(y, pred),
        "accuracy": skm.accuracy_score(y, pred),
    }
    out["pr_curve"] = skm.precision_recall_curve(y, s)
    return out


def check_equal(r, ref):
    for k in ("roc_auc", "average_precision", "log_loss", "brier", "f1", "accuracy"):
        a, b = r[k], ref[k]
        if not abs(a - b) <= 1e-12 * max(1.0, abs(b)):
            raise SystemExit("MISMATCH %s: softpipe %r scikit-learn %r" % (k, a, b))
    p, rc, t = ref["pr_curve"]
    if not (np.array_equal(r["pr_curve"]["thresholds"], t)
            and np.allclose(r["pr_curve"]["precision"], p, rtol=1e-12, atol=0)
            and np.allclose(r["pr_curve"]["recall"], rc, rtol=1e-12, atol=0)):
        raise SystemExit("MISMATCH pr_curve")


def bench_seven(n, repeat, results):
    y, s = make_data(n)
    sp_t, sk_t = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        ref = sklearn_seven(y, s)
        sk_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        r = evaluate(y, s, metrics=SEVEN)
        sp_t.append(time.perf_counter() - t0)
        check_equal(r, ref)
        del ref, r
    ratio = statistics.median(sk_t) / statistics.median(sp_t)
    print("(a) seven metrics, n = %d (values equal to 1e-12, PR curve of %d points)"
          % (n, len(s)))
    print("    scikit-learn, 7 calls  %s" % summary(sk_t))
    print("    softpipe evaluate      %s" % summary(sp_t))
    print("    ratio %.1fx   goal >= 15x: %s" % (ratio, "PASS" if ratio >= 15 else "FAIL"))
    results["seven"] = {"n": n, "sklearn_s": sk_t, "softpipe_s": sp_t, "ratio": ratio}


def bench_bootstrap(n, repeat, results):
    y, s = make_data(n, seed=1)
    sp_t, sk_t = [], []
    for rep in range(repeat):
        rng = np.random.default_rng(rep)
        t0 = time.perf_counter()
        for _ in range(20):
            idx = rng.integers(0, n, n)
            skm.roc_auc_score(y[idx], s[idx])
        sk_t.append((time.perf_counter() - t0) * 50)  # scaled to 1,000 replicates
        t0 = time.perf_counter()
        r = evaluate(y, s, metrics="roc_auc", ci="bootstrap", replicates=1000, seed=rep)
        sp_t.append(time.perf_counter() - t0)
    ratio = statistics.median(sk_t) / statistics.median(sp_t)
    med = statistics.median(sp_t)
    lo, hi = r["ci"]["roc_auc"]
    print("(b) 1,000-replicate bootstrap of ROC AUC, n = %d (last interval [%.5f, %.5f])"
          % (n, lo, hi))
    print("    scikit-learn loop (20 x 50)  %s" % summary(sk_t))
    print("    softpipe                     %s" % summary(sp_t))
    print("    ratio %.1fx   goal >= 50x: %s;   softpipe %.2f s, goal <= 5 s: %s"
          % (ratio, "PASS" if ratio >= 50 else "FAIL", med, "PASS" if med <= 5 else "FAIL"))
    results["bootstrap"] = {"n": n, "sklearn_scaled_s": sk_t, "softpipe_s": sp_t,
                            "ratio": ratio}


MEMORY_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[2])
sys.path.insert(0, sys.argv[3])
import numpy as np
from bench_eval import make_data, SEVEN
from softpipe.metrics import evaluate

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
y, s = make_data(int(sys.argv[1]))
evaluate(y[:1000], s[:1000], metrics=SEVEN)  # load everything once
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM to the current resident size
before = status("VmRSS")
r = evaluate(y, s, metrics=SEVEN)
peak = status("VmHWM")
print(json.dumps({"input_bytes": y.nbytes + s.nbytes, "before": before, "peak": peak}))
"""


def bench_memory(n, results):
    p = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(n), sys.path[0],
                        os.path.join(ROOT, "bench")], capture_output=True, text=True)
    if p.returncode != 0:
        print("(c) memory: skipped (%s)" % p.stderr.strip().splitlines()[-1])
        return
    m = json.loads(p.stdout)
    added = m["peak"] - m["before"]
    ratio = added / m["input_bytes"]
    print("(c) peak memory of the seven-metric evaluate, n = %d" % n)
    print("    input arrays %.0f MB, added at peak %.0f MB: %.2fx the input   goal <= 3x: %s"
          % (m["input_bytes"] / 1e6, added / 1e6, ratio, "PASS" if ratio <= 3 else "FAIL"))
    results["memory"] = dict(m, added=added, ratio=ratio)


def bench_quick(n, repeat, results):
    y, s = make_data(n, seed=2)
    full_t, quick_t, boot_t = [], [], []
    for rep in range(repeat):
        t0 = time.perf_counter()
        full = evaluate(y, s, metrics="roc_auc")
        full_t.append(time.perf_counter() - t0)
        if rep == 0:  # the full-data interval, once (it is the slow thing quick mode avoids)
            t0 = time.perf_counter()
            fb = evaluate(y, s, metrics="roc_auc", ci="bootstrap", replicates=1000)
            boot_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        q = evaluate(y, s, metrics="roc_auc", quick=0.01, seed=rep)
        quick_t.append(time.perf_counter() - t0)
    lo, hi = q["ci"]["roc_auc"]
    print("(d) quick mode (context), n = %d: 1 %% stratified sample of %d rows"
          % (n, q["info"]["n_used"]))
    print("    full roc_auc              %s  (%.5f)" % (summary(full_t), full["roc_auc"]))
    flo, fhi = fb["ci"]["roc_auc"]
    print("    full roc_auc + interval   %s  (95 %% [%.5f, %.5f], width %.5f)"
          % (summary(boot_t), flo, fhi, fhi - flo))
    print("    quick roc_auc + interval  %s  (%.5f, 95 %% [%.5f, %.5f], width %.5f)"
          % (summary(quick_t), q["roc_auc"], lo, hi, hi - lo))
    results["quick"] = {"n": n, "full_s": full_t, "full_boot_s": boot_t, "quick_s": quick_t,
                        "width": hi - lo, "full_width": fhi - flo}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--boot-n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="seven,bootstrap,memory,quick")
    ap.add_argument("--json")
    a = ap.parse_args()
    only = set(a.only.split(","))
    print("softpipe evaluation benchmark; scikit-learn %s, numpy %s, %d cores"
          % (__import__("sklearn").__version__, np.__version__, os.cpu_count()))
    results = {}
    if "seven" in only:
        bench_seven(a.n, a.repeat, results)
    if "bootstrap" in only:
        bench_bootstrap(a.boot_n, a.repeat, results)
    if "memory" in only:
        bench_memory(a.n, results)
    if "quick" in only:
        bench_quick(a.n, a.repeat, results)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
