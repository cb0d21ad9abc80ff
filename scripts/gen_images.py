#!/usr/bin/python3
"""Deterministic generator of softpipe's benchmark image set (an ImageFolder tree of JPEGs).

Recipe (docs: /work/shared/design/anchors.md, "Benchmark image set"): each image is cut from one
of the real photographs that scikit-learn ships (china.jpg, flower.jpg; plus scikit-image's colour
data images when `skimage` happens to be importable) by

  * a random crop of 40-100 % of the source area, with the target aspect ratio,
  * a random horizontal flip,
  * a bicubic resize to an ImageNet-like size: long side 500 with p = 0.75, else uniform 300..640;
    aspect 4:3 / 3:2 / 1:1 (weights 0.60 / 0.25 / 0.15), 20 % portrait,
  * light sharpening (PIL UnsharpMask radius 2, 80 %, threshold 2),
  * film grain: gaussian noise added with NumPy, a luminance component of sigma s plus a per-channel
    (chroma) component of sigma s/2, s = 7.65 * exp(N(0, 0.3)) drawn per image,
  * JPEG quality 90, 4:2:0 chroma subsampling, baseline, no EXIF.

The grain and sharpening were tuned so the set matches ImageNet's statistics (about 90.8 KB per file,
about 469 x 401 px). Image i goes to class (i % classes) as class_CC/img_IIIIII.jpg, and is made
from its own RNG seeded by (seed, i), so the bytes depend only on --seed, the index, the sources and
the Pillow/libjpeg build -- not on --workers.

Usage:
  /usr/bin/python3 scripts/gen_images.py OUT_DIR [--count 10000] [--classes 10] [--seed 0]
                                         [--workers 2] [--quality 90] [--force]

Statistics are printed at the end and written to OUT_DIR.stats.json (beside the folder, so that the
folder stays a pure ImageFolder tree). KB and MB are decimal (1 KB = 1000 bytes).
"""

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import sys
import time

import numpy as np
from PIL import Image, ImageFilter

RECIPE_VERSION = 1

# Target geometry.
LONG_SIDE_FIXED = 500
LONG_SIDE_FIXED_P = 0.75
LONG_SIDE_RANGE = (300, 640)          # inclusive, used with p = 1 - LONG_SIDE_FIXED_P
ASPECTS = (4.0 / 3.0, 3.0 / 2.0, 1.0)
ASPECT_WEIGHTS = (0.60, 0.25, 0.15)
PORTRAIT_P = 0.20
CROP_AREA = (0.40, 1.00)

# Texture tuning (see module docstring / bench/README.md).
UNSHARP = dict(radius=2, percent=80, threshold=2)
GRAIN_SIGMA = 7.65                     # luminance grain sigma, in 8-bit levels
GRAIN_CHROMA = 0.5                     # per-channel grain sigma, relative to GRAIN_SIGMA
GRAIN_SPREAD = 0.3                     # per-image sigma = GRAIN_SIGMA * exp(N(0, GRAIN_SPREAD))

SKIMAGE_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")

_SOURCES = None  # list of (name, PIL.Image RGB); set in the parent before forking / per worker


def load_sources():
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    out = []
    for fn, arr in zip(data.filenames, data.images):
        out.append((os.path.basename(fn), Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")))
    try:  # optional; changes the output, so the list of sources is recorded in the stats
        import skimage.data as skd  # noqa: F401
    except Exception:
        skd = None
    if skd is not None:
        for name in SKIMAGE_NAMES:
            try:
                arr = getattr(skd, name)()
            except Exception:
                continue
            if arr.ndim == 3 and arr.shape[2] >= 3:
                out.append(("skimage:" + name, Image.fromarray(np.ascontiguousarray(arr[:, :, :3])).convert("RGB")))
    return out


def _init_worker():
    global _SOURCES
    if _SOURCES is None:
        _SOURCES = load_sources()


def render(i, seed, quality):
    """Return (jpeg_bytes, width, height) of image i. Depends only on (seed, i, quality, sources)."""
    rng = np.random.default_rng([seed, i, RECIPE_VERSION])
    name, src = _SOURCES[int(rng.integers(len(_SOURCES)))]

    if rng.random() < LONG_SIDE_FIXED_P:
        long_side = LONG_SIDE_FIXED
    else:
        long_side = int(rng.integers(LONG_SIDE_RANGE[0], LONG_SIDE_RANGE[1] + 1))
    aspect = ASPECTS[int(rng.choice(len(ASPECTS), p=ASPECT_WEIGHTS))]
    if rng.random() < PORTRAIT_P:
        w, h = int(round(long_side / aspect)), long_side
    else:
        w, h = long_side, int(round(long_side / aspect))

    # Crop of 40-100 % of the source area with the target's aspect ratio (shrunk to fit if needed).
    sw, sh = src.size
    ar = w / h
    frac = rng.uniform(*CROP_AREA)
    cw = np.sqrt(frac * sw * sh * ar)
    ch = cw / ar
    fit = min(1.0, sw / cw, sh / ch)
    cw = min(cw * fit, float(sw))
    ch = min(ch * fit, float(sh))
    x0 = rng.uniform(0.0, max(0.0, sw - cw))
    y0 = rng.uniform(0.0, max(0.0, sh - ch))
    im = src.resize((w, h), Image.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)

    im = im.filter(ImageFilter.UnsharpMask(**UNSHARP))

    sigma = GRAIN_SIGMA * float(np.exp(rng.normal(0.0, GRAIN_SPREAD)))
    a = np.asarray(im, dtype=np.float32)
    noise = rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(sigma)
    noise = noise + rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(sigma * GRAIN_CHROMA)
    a += noise
    a += np.float32(0.5)
    np.clip(a, 0.0, 255.0, out=a)
    im = Image.fromarray(a.astype(np.uint8), "RGB")

    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, subsampling=2, optimize=False, progressive=False)
    return buf.getvalue(), w, h


def class_name(c, classes):
    return "class_%0*d" % (max(2, len(str(classes - 1))), c)


def image_name(i, count):
    return "img_%0*d.jpg" % (max(6, len(str(count - 1))), i)


def _job(args):
    i, out_dir, count, classes, seed, quality = args
    data, w, h = render(i, seed, quality)
    rel = os.path.join(class_name(i % classes, classes), image_name(i, count))
    with open(os.path.join(out_dir, rel), "wb") as f:
        f.write(data)
    return i, rel, len(data), w, h, hashlib.sha256(data).digest()


def _is_generated_tree(path):
    """True if path holds only class_*/ folders of *.jpg files (i.e. safe to delete with --force)."""
    for entry in os.scandir(path):
        if not (entry.is_dir(follow_symlinks=False) and entry.name.startswith("class_")):
            return False
        for sub in os.scandir(entry.path):
            if not (sub.is_file(follow_symlinks=False) and sub.name.endswith(".jpg")):
                return False
    return True


def stats_path(out_dir):
    return os.path.normpath(out_dir) + ".stats.json"


def generate(out_dir, count=10000, classes=10, seed=0, workers=2, quality=90, force=False, quiet=False):
    global _SOURCES
    if count < 1 or classes < 1 or workers < 1 or not (1 <= quality <= 100):
        raise ValueError("count, classes and workers must be >= 1, quality in 1..100")
    out_dir = os.path.normpath(out_dir)
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise FileExistsError("%s exists and is not a directory" % out_dir)
        if os.listdir(out_dir):
            if not force:
                raise FileExistsError("%s exists and is not empty (use --force to replace it)" % out_dir)
            if not _is_generated_tree(out_dir):
                raise FileExistsError("%s holds files this generator did not make; refusing to delete it" % out_dir)
            shutil.rmtree(out_dir)
    sp = stats_path(out_dir)
    if os.path.exists(sp):
        os.remove(sp)
    os.makedirs(out_dir, exist_ok=True)
    for c in range(min(classes, count)):
        os.makedirs(os.path.join(out_dir, class_name(c, classes)), exist_ok=True)

    _SOURCES = load_sources()
    t0 = time.perf_counter()
    jobs = ((i, out_dir, count, classes, seed, quality) for i in range(count))
    results = [None] * count
    if workers == 1:
        it = map(_job, jobs)
        pool = None
    else:
        ctx = multiprocessing.get_context("fork") if hasattr(os, "fork") else multiprocessing.get_context()
        pool = ctx.Pool(workers, initializer=_init_worker)
        it = pool.imap_unordered(_job, jobs, chunksize=16)
    try:
        done = 0
        for r in it:
            results[r[0]] = r
            done += 1
            if not quiet and sys.stderr.isatty() and done % 500 == 0:
                print("  %d/%d" % (done, count), file=sys.stderr, end="\r")
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    seconds = time.perf_counter() - t0

    sizes = np.array([r[2] for r in results], dtype=np.float64)
    ws = np.array([r[3] for r in results], dtype=np.float64)
    hs = np.array([r[4] for r in results], dtype=np.float64)
    digest = hashlib.sha256()
    for r in results:
        digest.update(r[1].replace(os.sep, "/").encode() + b"\0" + r[5])
    stats = {
        "files": count,
        "classes": min(classes, count),
        "total_bytes": int(sizes.sum()),
        "mean_bytes": float(sizes.mean()),
        "mean_kb": float(sizes.mean()) / 1000.0,
        "median_kb": float(np.median(sizes)) / 1000.0,
        "mean_width": float(ws.mean()),
        "mean_height": float(hs.mean()),
        "total_mb": float(sizes.sum()) / 1e6,
        "generation_seconds": seconds,
        "params": {"count": count, "classes": classes, "seed": seed, "quality": quality,
                   "subsampling": "4:2:0", "recipe_version": RECIPE_VERSION,
                   "grain_sigma": GRAIN_SIGMA, "grain_chroma": GRAIN_CHROMA,
                   "grain_spread": GRAIN_SPREAD, "unsharp": UNSHARP},
        "sources": [n for n, _ in _SOURCES],
        "pillow": Image.__version__,
        "digest_sha256": digest.hexdigest(),
        "units": "KB = 1000 bytes, MB = 1e6 bytes",
    }
    with open(sp + ".tmp", "w") as f:
        json.dump(stats, f, indent=2)
        f.write("\n")
    os.replace(sp + ".tmp", sp)
    return stats


def format_stats(s):
    return ("files %d in %d classes, mean %.1f KB/file (median %.1f), mean %.0f x %.0f px, "
            "total %.1f MB, %.1f s (%.0f img/s)" % (
                s["files"], s["classes"], s["mean_kb"], s["median_kb"], s["mean_width"],
                s["mean_height"], s["total_mb"], s["generation_seconds"],
                s["files"] / max(s["generation_seconds"], 1e-9)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--force", action="store_true", help="replace an existing generated OUT_DIR")
    a = p.parse_args(argv)
    try:
        s = generate(a.out_dir, a.count, a.classes, a.seed, a.workers, a.quality, a.force)
    except (FileExistsError, ValueError) as e:
        print("gen_images: error: %s" % e, file=sys.stderr)
        return 2
    print(format_stats(s))
    print("digest %s; stats in %s" % (s["digest_sha256"], stats_path(a.out_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
