#!/usr/bin/python3
"""Writes stored predictions for the evaluation demo, tests and benchmarks.

    /usr/bin/python3 scripts/gen_preds.py OUT_DIR [--n 1000000] [--seed 0] [--classes 0]
                                          [--csv]

Binary (default): OUT_DIR/y_true.npy (int64, y ~ Bernoulli(0.3)) and OUT_DIR/y_score.npy
(float64, sigmoid(N(0, 1) + 1.5 y - 0.7)) -- the recipe bench/bench_eval.py measures on.
With --classes K >= 3: y_true in 0..K-1 and y_score an n x K matrix of softmax probabilities
whose true-class logit is raised by 1.5. --csv also writes OUT_DIR/preds.csv with columns
label, score (or p0..pK-1).
"""

import argparse
import os

import numpy as np


def binary(n, seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    s = 1.0 / (1.0 + np.exp(-(rng.standard_normal(n) + 1.5 * y - 0.7)))
    return y, s


def multiclass(n, k, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.standard_normal((n, k))
    z[np.arange(n), y] += 1.5
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return y, p / p.sum(axis=1, keepdims=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", type=int, default=0)
    ap.add_argument("--csv", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    y, s = multiclass(a.n, a.classes, a.seed) if a.classes >= 3 else binary(a.n, a.seed)
    np.save(os.path.join(a.out, "y_true.npy"), y)
    np.save(os.path.join(a.out, "y_score.npy"), s)
    if a.csv:
        cols = ["score"] if s.ndim == 1 else ["p%d" % j for j in range(s.shape[1])]
        table = np.column_stack([y, s.reshape(len(y), -1)])
        np.savetxt(os.path.join(a.out, "preds.csv"), table, delimiter=",", comments="",
                   header=",".join(["label"] + cols), fmt=["%d"] + ["%.17g"] * len(cols))
    print("wrote %d rows to %s" % (a.n, a.out))


if __name__ == "__main__":
    main()
