#!/usr/bin/python3
"""Tree-ensemble serving benchmark: softpipe.TreeModel / sp_tree_predict against XGBoost 1.7.

    /usr/bin/python3 bench/bench_trees.py [--repeat 5] [--only latency,python,batch,load]
            [--json FILE] [--calls 20000] [--py-calls 5000] [--rows 100000]
            [--train-rows 50000] [--seed 0] [--quiet-wait 30]

Model (issue 6): 500 trees of depth 6 on 50 float32 features, binary:logistic, trained with
XGBoost's hist method on generated data (make_data: train_rows x 50, the label a nonlinear
function of 8 features plus noise, 5 % NaN in features 0-9); params {"objective":
"binary:logistic", "max_depth": 6, "eta": 0.1, "tree_method": "hist", "nthread": 2}. One
1,000-round training gives both models: the 1,000-tree model (load test) and its first 500
trees (everything else; boosting round k depends only on rounds < k, so this is the 500-round
model). Both are cached as XGBoost JSON in bench/data/trees/ under a name holding the recipe's
parameters. Benchmark rows: make_data(rows, seed + 1), a different draw of the same recipe.

Parity first (untimed): softpipe's margins against XGBoost's (inplace_predict, predict_type=
"margin") on all benchmark rows; max |diff| <= 1e-5 is the check (a diff above 1e-3 aborts).

What it measures, softpipe and XGBoost in the same run, alternating, repeated R times:

  latency  bench/trees_latency.c (built here with cc against $SOFTPIPE_BUILD): single-row
           sp_tree_predict(model, row, 1, 50, 0, 1, out) against XGBoost's C API
           XGBoosterPredictFromDense (nthread=1), --calls calls of each over the first 1,000
           benchmark rows, in R interleaved rounds, each call timed alone. p50/p90/p99.
           Goal: softpipe p50 <= 1/4 of XGBoost's C API p50.
  python   single row from Python: softpipe.TreeModel.predict(row, threads=1) (row: 1-D
           float32 view) against Booster.inplace_predict(row_1x50) (nthread=1), --py-calls calls
           of each in R interleaved rounds, time.perf_counter_ns around each call, gc off.
           Goal: softpipe p50 <= 1/20 of inplace_predict's p50 (also shown: softpipe's C API
           p50 against inplace_predict's, when latency ran).
  batch    --rows rows x 50 float32: TreeModel.predict(X, threads=2) against
           inplace_predict(X) with nthread=2; rows/s. Goal: >= 3x.
  load     sp_tree_model_load of the 1,000-tree model from C (trees_latency load), against
           XGBoosterCreate + XGBoosterLoadModel, alternating, R times; median. Goal: < 200 ms.
           Context: softpipe.TreeModel(path) from Python.

No timing is asserted: goals are PASS/FAIL lines; the exit status is 0 unless something broke.
softpipe's build: $SOFTPIPE_BUILD (default build/): the library build/libsoftpipe.so and the
Python module build/python (or $SOFTPIPE_PYTHONPATH).
"""

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(os.environ.get("SOFTPIPE_BUILD", os.path.join(ROOT, "build")))
PYPATH = os.environ.get("SOFTPIPE_PYTHONPATH", os.path.join(BUILD, "python"))
sys.path.insert(0, PYPATH)
DATA = os.path.join(ROOT, "bench", "data", "trees")

import numpy as np  # noqa: E402
import xgboost as xgb  # noqa: E402

try:
    from softpipe import TreeModel  # noqa: E402
    SP_IMPORT_ERROR = None
except Exception as e:  # the module is missing or predates the tree runtime
    TreeModel = None
    SP_IMPORT_ERROR = "%s: %s" % (type(e).__name__, e)

RECIPE = 1  # bump when make_data or the training parameters change
N_FEATURES = 50
PARAMS = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "tree_method": "hist",
          "nthread": 2}
LATENCY_ROWS = 1000


def make_data(n, seed):
    """n x 50 float32 features and a 0/1 label; 5 % NaN in features 0-9."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_FEATURES)).astype(np.float32)
    X[:, 10:20] = np.round(rng.random((n, 10)) * 10, 1)  # coarse uniform features (ties)
    X[:, 20:25] = rng.integers(0, 5, (n, 5))  # small integer codes
    x = X.astype(np.float64)
    z = (np.sin(1.5 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.5 * x[:, 3] ** 2 - 0.5
         + 0.8 * np.tanh(x[:, 4] + x[:, 5]) + 0.3 * x[:, 6] * np.abs(x[:, 7])
         + 0.1 * (x[:, 10] - 5) + 0.2 * (x[:, 20] == 3))
    y = (z + 0.7 * rng.standard_normal(n) > 0).astype(np.float32)
    mask = rng.random((n, 10)) < 0.05
    X[:, :10][mask] = np.nan
    return X, y


def model_paths(train_rows, seed):
    stem = "xgb%s_v%d_n%d_f%d_d%d_eta%g_s%d" % (xgb.__version__, RECIPE, train_rows, N_FEATURES,
                                                 PARAMS["max_depth"], PARAMS["eta"], seed)
    return (os.path.join(DATA, stem + "_r500.json"), os.path.join(DATA, stem + "_r1000.json"))


def ensure_models(train_rows, seed):
    p500, p1000 = model_paths(train_rows, seed)
    if os.path.exists(p500) and os.path.exists(p1000):
        return p500, p1000
    os.makedirs(DATA, exist_ok=True)
    X, y = make_data(train_rows, seed)
    t0 = time.perf_counter()
    bst = xgb.train(PARAMS, xgb.DMatrix(X, label=y, missing=np.nan), num_boost_round=1000)
    print("trained 1,000 rounds on %d rows in %.1f s" % (train_rows, time.perf_counter() - t0))
    for path, b in ((p1000, bst), (p500, bst[:500])):
        b.save_model(path + ".tmp.json")
        os.replace(path + ".tmp.json", path)
    return p500, p1000


def med(xs):
    return statistics.median(xs)


def fmt_range(xs, f="%.1f"):
    return (f + " [" + f + ".." + f + "]") % (med(xs), min(xs), max(xs))


def pctl(sorted_xs, p):
    """Nearest-rank percentile (the C program uses the same)."""
    n = len(sorted_xs)
    k = min(max(int(np.ceil(p / 100.0 * n)), 1), n)
    return sorted_xs[k - 1]


def cpu_busy_others(interval=1.0):
    """Cores that other processes kept busy over `interval` seconds (/proc/stat less this
    process's own CPU time)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        r = resource.getrusage(resource.RUSAGE_SELF)
        return sum(v), v[3] + v[4], r.ru_utime + r.ru_stime
    t0, i0, s0 = snap()
    w0 = time.perf_counter()
    time.sleep(interval)
    t1, i1, s1 = snap()
    busy = (os.cpu_count() or 1) * (1 - (i1 - i0) / max(1, t1 - t0))
    return max(0.0, busy - (s1 - s0) / (time.perf_counter() - w0))


class BusyGauge:
    """Cores that other processes kept busy while a part ran: /proc/stat's busy time over the
    part less the CPU time of this process and its reaped children (trees_latency)."""

    def __enter__(self):
        self.t0 = self._snap()
        return self

    @staticmethod
    def _snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        a = resource.getrusage(resource.RUSAGE_SELF)
        b = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime
        return sum(v), v[3] + v[4], own, time.perf_counter()

    def __exit__(self, *exc):
        t0, i0, o0, w0 = self.t0
        t1, i1, o1, w1 = self._snap()
        busy = (os.cpu_count() or 1) * (1 - (i1 - i0) / max(1, t1 - t0))
        self.others = max(0.0, busy - (o1 - o0) / max(1e-9, w1 - w0))
        return False


def wait_quiet(limit_s, part):
    """Waits up to limit_s for the other processes to use < 0.3 cores; returns the last gauge."""
    t_end = time.time() + limit_s
    busy = cpu_busy_others(0.5)
    while busy >= 0.3 and time.time() < t_end:
        busy = cpu_busy_others(1.0)
    if busy >= 0.3:
        print("    (note: other processes keep %.2f cores busy before %s)" % (busy, part))
    return busy


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


# ---------------------------------------------------------------- the C program

def build_c(out_dir):
    """Builds bench/trees_latency.c against $SOFTPIPE_BUILD; returns the binary or raises."""
    lib = os.path.join(BUILD, "libsoftpipe.so")
    if not os.path.exists(lib):
        raise RuntimeError("%s is missing" % lib)
    exe = os.path.join(out_dir, "trees_latency")
    cmd = ["cc", "-O2", "-std=gnu11", "-I" + os.path.join(ROOT, "include"), "-o", exe,
           os.path.join(ROOT, "bench", "trees_latency.c"), "-L" + BUILD, "-lsoftpipe",
           "-Wl,-rpath," + BUILD, "-ldl", "-lm"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        if "undefined reference to `sp_tree" in p.stderr:
            raise RuntimeError("%s has no sp_tree_* functions: a build older than the tree "
                               "runtime; rebuild it or set SOFTPIPE_BUILD" % lib)
        raise RuntimeError("cc failed: %s" % p.stderr.strip()[-600:])
    return exe


def libxgboost_path():
    from xgboost import libpath
    return libpath.find_lib_path()[0]


def run_c(args, timeout=600):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("%s failed: %s" % (os.path.basename(args[0]) + " " + args[1],
                                              p.stderr.strip()[-600:]))
    return json.loads(p.stdout)


# ---------------------------------------------------------------- parts

def check_parity(sp, bst2, X, results):
    m_x = bst2.inplace_predict(X, predict_type="margin")
    m_s = sp.predict(X, margin=True, threads=2)
    p_x = bst2.inplace_predict(X)
    p_s = sp.predict(X, threads=2)
    d_m = float(np.max(np.abs(m_x.astype(np.float64) - m_s)))
    d_p = float(np.max(np.abs(p_x.astype(np.float64) - p_s)))
    n_exact = int(np.sum(m_x == m_s))
    ok = d_m <= 1e-5
    print("parity on %d rows: max |margin diff| %.3g (%d of %d bit-equal), max |prob diff| %.3g"
          "   goal <= 1e-5: %s" % (len(X), d_m, n_exact, len(X), d_p, "PASS" if ok else "FAIL"))
    results["parity"] = {"rows": len(X), "max_abs_margin_diff": d_m,
                         "max_abs_prob_diff": d_p, "bit_equal": n_exact, "pass": ok}
    if not d_m <= 1e-3:
        raise SystemExit("MISMATCH: softpipe's margins differ from XGBoost's by %g" % d_m)


def bench_latency(exe, model, rows_path, calls, rounds, results):
    r = run_c([exe, "latency", model, rows_path, str(LATENCY_ROWS), str(N_FEATURES),
               libxgboost_path(), "--calls", str(max(1, calls // rounds)), "--rounds",
               str(rounds)])
    x, s = r["xgboost"], r["softpipe"]
    ratio = x["p50_us"] / s["p50_us"]
    print("(a) single row, C API, %d calls each in %d alternating rounds (%s layout, outputs "
          "differ by at most %.3g)" % (x["calls"], rounds, r["softpipe_layout"],
                                       r["max_abs_diff"]))
    for name, d in (("XGBoosterPredictFromDense", x), ("sp_tree_predict", s)):
        print("    %-27s p50 %8.2f  p90 %8.2f  p99 %8.2f µs   (round p50s %s)"
              % (name, d["p50_us"], d["p90_us"], d["p99_us"],
                 fmt_range(d["rounds_p50_us"], "%.2f")))
    ok = s["p50_us"] <= x["p50_us"] / 4
    print("    p50 ratio %.1fx   goal >= 4x (softpipe p50 <= 1/4 of XGBoost's C API): %s"
          % (ratio, "PASS" if ok else "FAIL"))
    results["latency"] = dict(r, ratio_p50=ratio, ratio_p99=x["p99_us"] / s["p99_us"],
                              **{"pass": ok})


def bench_python(sp, bst1, X, calls, rounds, results):
    rows2d = [X[i:i + 1] for i in range(LATENCY_ROWS)]
    rows1d = [X[i] for i in range(LATENCY_ROWS)]
    for i in range(LATENCY_ROWS):  # warm-up and check
        a = bst1.inplace_predict(rows2d[i])[0]
        if sp is None:
            continue
        b = sp.predict(rows1d[i], threads=1)
        if not abs(float(a) - float(b)) <= 1e-5:
            raise SystemExit("MISMATCH row %d: xgboost %r softpipe %r" % (i, a, b))
    per = max(1, calls // rounds)
    t_x, t_s = [], []
    r_x, r_s = [], []
    clock = time.perf_counter_ns
    gc_was = gc.isenabled()
    gc.disable()
    try:
        nxt = 0
        for r in range(rounds):
            for side in ((0,) if sp is None else (0, 1) if r % 2 == 0 else (1, 0)):
                ts = []
                i = nxt
                if side == 0:
                    for _ in range(per):
                        row = rows2d[i]
                        i = (i + 1) % LATENCY_ROWS
                        t0 = clock()
                        bst1.inplace_predict(row)
                        ts.append(clock() - t0)
                    t_x += ts
                    r_x.append(pctl(sorted(ts), 50) / 1e3)
                else:
                    for _ in range(per):
                        row = rows1d[i]
                        i = (i + 1) % LATENCY_ROWS
                        t0 = clock()
                        sp.predict(row, threads=1)
                        ts.append(clock() - t0)
                    t_s += ts
                    r_s.append(pctl(sorted(ts), 50) / 1e3)
            nxt = (nxt + per) % LATENCY_ROWS
    finally:
        if gc_was:
            gc.enable()
    out = {}
    print("(b) single row from Python, %d calls each in %d alternating rounds" % (len(t_x), rounds))
    for name, key, ts, rp in (("Booster.inplace_predict", "xgboost", t_x, r_x),
                              ("TreeModel.predict", "softpipe", t_s, r_s)):
        if not ts:
            print("    %-27s skipped (no softpipe Python module)" % name)
            continue
        s = sorted(ts)
        d = {"calls": len(s), "p50_us": pctl(s, 50) / 1e3, "p90_us": pctl(s, 90) / 1e3,
             "p99_us": pctl(s, 99) / 1e3, "mean_us": sum(s) / len(s) / 1e3,
             "rounds_p50_us": rp}
        out[key] = d
        print("    %-27s p50 %8.2f  p90 %8.2f  p99 %8.2f µs   (round p50s %s)"
              % (name, d["p50_us"], d["p90_us"], d["p99_us"], fmt_range(rp, "%.2f")))
    results["python"] = out
    if sp is None:
        return
    ratio = out["xgboost"]["p50_us"] / out["softpipe"]["p50_us"]
    ok = ratio >= 20
    print("    p50 ratio %.1fx   goal >= 20x (softpipe p50 <= 1/20 of inplace_predict): %s"
          % (ratio, "PASS" if ok else "FAIL"))
    if "latency" in results:
        c = results["latency"]["softpipe"]["p50_us"]
        print("    (context) sp_tree_predict from C, p50 %.2f µs: %.0fx below inplace_predict's p50"
              % (c, out["xgboost"]["p50_us"] / c))
        out["ratio_c_api_vs_inplace"] = out["xgboost"]["p50_us"] / c
    out.update({"ratio_p50": ratio, "pass": ok,
                "ratio_p99": out["xgboost"]["p99_us"] / out["softpipe"]["p99_us"]})


def bench_batch(sp, bst2, X, repeat, results):
    bst2.inplace_predict(X)  # warm-up
    if sp is not None:
        sp.predict(X, threads=2)
        sp.predict(X, threads=1)
    t_x, t_s, t_s1 = [], [], []
    for r in range(repeat):
        order = ("x",) if sp is None else ("x", "s", "s1") if r % 2 == 0 else ("s1", "s", "x")
        for side in order:
            t0 = time.perf_counter()
            if side == "x":
                bst2.inplace_predict(X)
                t_x.append(time.perf_counter() - t0)
            elif side == "s":
                sp.predict(X, threads=2)
                t_s.append(time.perf_counter() - t0)
            else:
                sp.predict(X, threads=1)
                t_s1.append(time.perf_counter() - t0)
    n = len(X)
    rx = [n / t / 1e3 for t in t_x]
    print("(c) batch of %d rows, 2 threads, %d alternating runs (k rows/s)" % (n, repeat))
    print("    XGBoost inplace_predict      %s" % fmt_range(rx, "%.0f"))
    results["batch"] = {"rows": n, "xgboost_s": t_x}
    if sp is None:
        print("    softpipe                     skipped (no softpipe Python module)")
        return
    rs = [n / t / 1e3 for t in t_s]
    rs1 = [n / t / 1e3 for t in t_s1]
    ratio = med(t_x) / med(t_s)
    ok = ratio >= 3
    print("    softpipe predict, threads=2  %s" % fmt_range(rs, "%.0f"))
    print("    (context) softpipe threads=1 %s" % fmt_range(rs1, "%.0f"))
    print("    ratio %.2fx [%.2f..%.2f]   goal >= 3x: %s"
          % (ratio, min(t_x) / max(t_s), max(t_x) / min(t_s), "PASS" if ok else "FAIL"))
    results["batch"].update({"softpipe_s": t_s, "softpipe_threads1_s": t_s1, "ratio": ratio,
                             "pass": ok})


def bench_load(exe, model_1000, repeat, results):
    r = run_c([exe, "load", model_1000, libxgboost_path(), "--repeat", str(repeat)])
    t_py = []
    if TreeModel is not None:
        for _ in range(repeat):
            t0 = time.perf_counter()
            m = TreeModel(model_1000)
            t_py.append((time.perf_counter() - t0) * 1e3)
            del m
    ms = med(r["softpipe_ms"])
    ok = ms < 200
    print("(d) load of the %d-tree model (%.1f MB of JSON), %d alternating loads (ms)"
          % (r["trees"], r["file_bytes"] / 1e6, repeat))
    print("    XGBoosterLoadModel       %s" % fmt_range(r["xgboost_ms"]))
    print("    sp_tree_model_load       %s  (%s layout, %.1f MB compiled)"
          % (fmt_range(r["softpipe_ms"]), r["softpipe_layout"], r["softpipe_mem_bytes"] / 1e6))
    if t_py:
        print("    (context) TreeModel(path) %s" % fmt_range(t_py))
    print("    softpipe %.1f ms, goal < 200 ms: %s   (%.1fx faster than XGBoost)"
          % (ms, "PASS" if ok else "FAIL", med(r["xgboost_ms"]) / ms))
    results["load"] = dict(r, python_ms=t_py, **{"pass": ok})


def table(results):
    """The compact summary: one line per measurement."""
    rows = []
    if "latency" in results:
        L = results["latency"]
        rows.append(("single row, C API, p50 µs", "%.2f" % L["softpipe"]["p50_us"],
                     "%.2f" % L["xgboost"]["p50_us"], "%.1fx" % L["ratio_p50"],
                     ">= 4x: %s" % ("PASS" if L["pass"] else "FAIL")))
        rows.append(("single row, C API, p99 µs", "%.2f" % L["softpipe"]["p99_us"],
                     "%.2f" % L["xgboost"]["p99_us"], "%.1fx" % L["ratio_p99"], ""))
    if "softpipe" in results.get("python", {}):
        P = results["python"]
        rows.append(("single row, Python, p50 µs", "%.2f" % P["softpipe"]["p50_us"],
                     "%.2f" % P["xgboost"]["p50_us"], "%.1fx" % P["ratio_p50"],
                     ">= 20x: %s" % ("PASS" if P["pass"] else "FAIL")))
        rows.append(("single row, Python, p99 µs", "%.2f" % P["softpipe"]["p99_us"],
                     "%.2f" % P["xgboost"]["p99_us"], "%.1fx" % P["ratio_p99"], ""))
    if "ratio" in results.get("batch", {}):
        B = results["batch"]
        n = B["rows"]
        rows.append(("batch %dk rows, 2 threads, k rows/s" % (n // 1000),
                     "%.0f" % (n / med(B["softpipe_s"]) / 1e3),
                     "%.0f" % (n / med(B["xgboost_s"]) / 1e3), "%.2fx" % B["ratio"],
                     ">= 3x: %s" % ("PASS" if B["pass"] else "FAIL")))
    if "load" in results:
        D = results["load"]
        rows.append(("load %d-tree model, ms" % D["trees"], "%.1f" % med(D["softpipe_ms"]),
                     "%.1f" % med(D["xgboost_ms"]),
                     "%.1fx" % (med(D["xgboost_ms"]) / med(D["softpipe_ms"])),
                     "< 200 ms: %s" % ("PASS" if D["pass"] else "FAIL")))
    if not rows:
        return
    head = ("measurement (medians)", "softpipe", "XGBoost 1.7", "ratio", "goal")
    w = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
    print()
    for r in [head] + rows:
        print("  ".join(c.ljust(w[i]) if i == 0 or i == 4 else c.rjust(w[i])
                        for i, c in enumerate(r)).rstrip())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="rounds / runs per side")
    ap.add_argument("--only", default="latency,python,batch,load")
    ap.add_argument("--json")
    ap.add_argument("--calls", type=int, default=20000, help="C single-row calls per side")
    ap.add_argument("--py-calls", type=int, default=5000, help="Python single-row calls per side")
    ap.add_argument("--rows", type=int, default=100_000, help="batch rows")
    ap.add_argument("--train-rows", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet-wait", type=float, default=30,
                    help="seconds to wait before each part for other processes to go quiet")
    a = ap.parse_args()
    only = [p for p in a.only.split(",") if p]
    bad = set(only) - {"latency", "python", "batch", "load"}
    if bad:
        ap.error("unknown part(s) in --only: %s" % ",".join(sorted(bad)))

    print("softpipe tree-serving benchmark; XGBoost %s, numpy %s, %d cores, load average %.2f"
          % (xgb.__version__, np.__version__, os.cpu_count(), loadavg()))
    print("softpipe build: %s" % BUILD)
    results = {"xgboost": xgb.__version__, "build": BUILD, "repeat": a.repeat,
               "loadavg_start": loadavg()}
    p500, p1000 = ensure_models(a.train_rows, a.seed)
    print("models: %s (500 trees), %s (1,000 trees)"
          % (os.path.relpath(p500, ROOT), os.path.relpath(p1000, ROOT)))
    results["models"] = [p500, p1000]

    X, _ = make_data(a.rows, a.seed + 1)
    rows_path = os.path.join(DATA, "rows_v%d_s%d_%d.f32" % (RECIPE, a.seed + 1, LATENCY_ROWS))
    if not os.path.exists(rows_path):
        np.ascontiguousarray(X[:LATENCY_ROWS]).tofile(rows_path + ".tmp")
        os.replace(rows_path + ".tmp", rows_path)

    bst1 = xgb.Booster(model_file=p500)
    bst1.set_param({"nthread": 1})
    bst2 = xgb.Booster(model_file=p500)
    bst2.set_param({"nthread": 2})

    sp = None
    if TreeModel is None:
        print("softpipe Python module: skipped (%s; from %s)" % (SP_IMPORT_ERROR, PYPATH))
    else:
        sp = TreeModel(p500)
        check_parity(sp, bst2, X, results)

    exe, c_err = None, None
    if "latency" in only or "load" in only:
        try:
            exe = build_c(DATA)
        except RuntimeError as e:
            c_err = str(e)
            print("trees_latency.c: skipped (%s)" % c_err)

    busy, during = {}, {}
    for part in only:
        if part in ("latency", "load") and exe is None:
            continue
        busy[part] = wait_quiet(a.quiet_wait, part)
        la = loadavg()
        with BusyGauge() as g:
            if part == "latency":
                bench_latency(exe, p500, rows_path, a.calls, a.repeat, results)
            elif part == "python":
                bench_python(sp, bst1, X, a.py_calls, a.repeat, results)
            elif part == "batch":
                bench_batch(sp, bst2, X, a.repeat, results)
            elif part == "load":
                bench_load(exe, p1000, a.repeat, results)
        during[part] = g.others
        results[part]["others_cores_before"] = busy[part]
        results[part]["others_cores_during"] = g.others
        results[part]["loadavg_before"] = la
    table(results)
    if busy:
        print("cores other processes kept busy (before / during each part): %s; load average "
              "now %.2f" % (", ".join("%s %.2f / %.2f" % (k, busy[k], during[k]) for k in busy),
                            loadavg()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
