#!/bin/sh
# The demo, from a fresh clone on Debian 12 (as root, or with sudo): installs what it needs,
# builds softpipe, generates a small ImageFolder of JPEGs cut from real photographs, packs it
# into a dataset, inspects it, verifies it, corrupts a copy and shows verify catching it, then
# reads training batches through the loader (CLI and Python), then evaluates a million stored
# predictions with confidence intervals (CLI and Python), and runs a small pipeline twice to
# show a stage restored from the cache instead of rerun.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh >/dev/null
echo "== building softpipe"
BUILD_DIR=build ./scripts/build.sh >/dev/null
SP=./build/softpipe
work=${DEMO_DIR:-/tmp/softpipe-demo}
rm -rf "$work"
mkdir -p "$work"

echo "== generating 300 JPEGs in 10 classes under $work/images"
/usr/bin/python3 scripts/gen_images.py "$work/images" --count 300 --classes 10

echo
echo "== softpipe pack $work/images -o $work/ds"
$SP pack "$work/images" -o "$work/ds" --shard-size 8M
echo
echo "== softpipe inspect $work/ds"
$SP inspect "$work/ds"
echo
echo "== softpipe verify $work/ds"
$SP verify "$work/ds"
echo
echo "== flipping one byte inside a sample of a copy, then verify again (exit 1 expected)"
cp -r "$work/ds" "$work/ds-bad"
printf '\377' | dd of="$work/ds-bad/shard-00000.sps" bs=1 seek=50000 conv=notrunc status=none
if $SP verify "$work/ds-bad"; then echo "verify missed the corruption"; exit 1; fi
echo
echo "== reading samples from Python (zero-copy memoryview into the shard)"
PYTHONPATH=build/python /usr/bin/python3 - "$work/ds" <<'PY'
import sys, softpipe
ds = softpipe.Dataset(sys.argv[1])
payload, cols = ds[7]
print(f"len(ds) = {len(ds)}; ds[7]: {len(payload)} bytes, readonly={payload.readonly}, columns={cols}")
labels = ds.column("label")
print("label column as NumPy:", labels.dtype, labels[:12], "...")
PY
echo
echo "== the loader: decode only each random crop, resize, flip, normalize, batch (2 threads)"
$SP bench-load "$work/ds" --batch-size 32 --threads 2
echo
echo "== the same from Python: torch tensors straight from the loader's buffers"
PYTHONPATH=build/python /usr/bin/python3 - "$work/ds" <<'PY'
import sys, softpipe
loader = softpipe.Loader(sys.argv[1], batch_size=32, size=224, threads=2, seed=0)
images, labels = next(iter(loader))
print(f"{len(loader)} batches per epoch; first batch: {type(images).__module__}.{type(images).__name__}"
      f" {tuple(images.shape)} {images.dtype}, labels {labels[:8].tolist()} ...")
PY
echo
echo "== evaluation: 1M stored predictions, every metric from one sort, bootstrap intervals"
/usr/bin/python3 scripts/gen_preds.py "$work/preds" --n 1000000
$SP eval --y-true "$work/preds/y_true.npy" --y-score "$work/preds/y_score.npy" \
    --ci bootstrap --replicates 1000 --plot "$work/preds/curves.png"
echo
echo "== the same from Python, against scikit-learn"
PYTHONPATH=build/python /usr/bin/python3 - "$work/preds" <<'PY'
import sys, time, numpy as np
from sklearn.metrics import roc_auc_score
from softpipe.metrics import evaluate
y = np.load(sys.argv[1] + "/y_true.npy"); s = np.load(sys.argv[1] + "/y_score.npy")
t = time.perf_counter(); r = evaluate(y, s); t1 = time.perf_counter() - t
t = time.perf_counter(); auc = roc_auc_score(y, s); t2 = time.perf_counter() - t
print(f"softpipe: {len(r) - 3} results incl. roc_auc {r['roc_auc']:.12f} in {t1:.3f} s; "
      f"scikit-learn roc_auc_score alone {auc:.12f} in {t2:.3f} s")
q = evaluate(y, s, metrics="roc_auc", quick=0.01)
lo, hi = q["ci"]["roc_auc"]
print(f"quick mode (1 % stratified, {q['info']['n_used']} rows): roc_auc {q['roc_auc']:.4f}, "
      f"95 % interval [{lo:.4f}, {hi:.4f}]")
PY
echo
echo "== preprocessing once: a two-stage pipeline, a param change, and a restore from the cache"
P="$work/pipeline"
mkdir -p "$P"
cat > "$P/softpipe.yaml" <<'YAML'
stages:
  features:
    cmd: sleep 2 && seq 1 100000 > features.txt
    outs: [features.txt]
  train:
    cmd: sleep 1 && (cat params.yaml; wc -l < features.txt) > model.txt
    deps: [features.txt]
    params: [train.lr]
    outs: [model.txt]
YAML
printf 'train:\n  lr: 0.1\n' > "$P/params.yaml"
$SP run -C "$P"
printf 'train:\n  lr: 0.01\n' > "$P/params.yaml"
$SP status -C "$P" --why || true
$SP run -C "$P"
printf 'train:\n  lr: 0.1\n' > "$P/params.yaml"
$SP run -C "$P"
echo
echo "demo finished: dataset at $work/ds, evaluation plot at $work/preds/curves.png"
