#!/usr/bin/python3
"""Loader benchmark: softpipe.Loader against torch's DataLoader + torchvision, and the decode ceiling.

Run from anywhere (uses Debian's python3 for torch, torchvision, PIL and numpy):

    /usr/bin/python3 bench/bench_load.py [--repeat 3] [--images N] [--json FILE]

What it measures, repeated R times with every side in its own subprocess, alternating (order
reversed on odd repeats; the machines are noisy, so only the paired ratio is a claim):

  (b) loader    torch DataLoader(ImageFolder(RandomResizedCrop(224), RandomHorizontalFlip,
                ToTensor, Normalize(ImageNet)), batch 256, num_workers=2, shuffle,
                persistent_workers=False, pin_memory=False) vs softpipe.Loader(DS, batch_size=256,
                size=224, threads=2, crop="random_resized", flip=0.5, dtype="float32",
                layout="NCHW", same normalization), one epoch each, every batch consumed trivially
                (`images.shape`). Per side: img/s (images / seconds from constructing the loader to
                the last batch), CPU-seconds per image (self + reaped children, same window), peak
                RSS (softpipe: its one process; torch: VmHWM of the main process plus each worker,
                summed), time to the first batch. softpipe only: load_state_dict() at the middle of
                an epoch (its own subprocess, once per repeat).
                Goals: img/s >= 3x torch; CPU/img <= 1/3 of torch's; peak RSS <= 1/4 of the
                DataLoader's sum; first batch < 1 s; load_state_dict < 50 ms.
  (c) ceiling   bench/decode_ceiling.c (built here with cc -O2 into bench/data/): every JPEG in RAM
                first, then TurboJPEG tjDecompress2 to RGB at full size on 2 threads. softpipe's
                whole pipeline (`softpipe bench-load DS --json --threads 2`, C, no Python) vs it.
                Goals: >= 1.1x with crop-aware decode, >= 0.85x with --no-crop-decode.
                Context: the ceiling at DCT scale 1/2 and with fast IDCT/upsampling.
  (d) ablation  `softpipe bench-load` with threads 1 / 2, --no-crop-decode, --no-dct-scale, both,
                --decode fast: img/s and CPU per image of each, against the default and the
                ceiling (shown, not goals).

The image set is made by scripts/gen_images.py and cached in bench/data/ (git-ignored); its
statistics are printed with the results. With --images N the first N images (by index, so all
classes) are hard-linked into bench/data/load/ and every side uses that subset. The dataset is
packed, untimed, into bench/data/load/ at every run. softpipe: $SOFTPIPE_BIN or build/softpipe,
and the Python module from $SOFTPIPE_PYTHONPATH or build/python. A softpipe side that is missing
is reported as skipped; the peers are measured anyway. Exit status 0 unless the script broke.
"""

import argparse
import copy
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "bench", "data")
WORK = os.path.join(DATA, "load")
GEN = os.path.join(ROOT, "scripts", "gen_images.py")
CEILING_SRC = os.path.join(ROOT, "bench", "decode_ceiling.c")
CEILING_BIN = os.path.join(DATA, "decode_ceiling")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMEOUT_S = 900  # per subprocess (--timeout)
LAST_FOREIGN = [None]  # other processes' busy cores during the last subprocess

# (d) ablation variants: name -> softpipe options (Python Loader names) and bench-load flags.
ABLATIONS = [
    ("default (threads 2, all on)", {"threads": 2}, ["--threads", "2"]),
    ("threads 1", {"threads": 1}, ["--threads", "1"]),
    ("crop_decode off", {"threads": 2, "crop_decode": False}, ["--threads", "2", "--no-crop-decode"]),
    ("dct_scale off", {"threads": 2, "dct_scale": False}, ["--threads", "2", "--no-dct-scale"]),
    ("crop_decode + dct_scale off", {"threads": 2, "crop_decode": False, "dct_scale": False},
     ["--threads", "2", "--no-crop-decode", "--no-dct-scale"]),
    ("decode fast", {"threads": 2, "decode": "fast"}, ["--threads", "2", "--decode", "fast"]),
    # the same default settings on a dataset packed with --restart-markers (RST_DS below)
    ("restart markers (pack --restart-markers)", {"threads": 2}, ["--threads", "2"]),
]
RST_ABLATION = "restart markers (pack --restart-markers)"
CEILINGS = [  # (key, label, flags); the first is the goal's reference
    ("ceiling", "full size, accurate", []),
    ("ceiling_half", "DCT scale 1/2", ["--scale", "1/2"]),
    ("ceiling_fast", "fast IDCT+upsampling", ["--fast"]),
    ("ceiling_fast_half", "fast, scale 1/2", ["--fast", "--scale", "1/2"]),
]


# ====================================================================== job side (subprocesses)
# Each measurement runs as `bench_load.py --_job SPEC_JSON` and prints one JSON line on stdout.

def _read_status(pid):
    """VmHWM, VmRSS, RssAnon, RssFile, RssShmem of pid in kB (a dict; empty if it is gone)."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                    out[k] = int(v.split()[0])
    except (OSError, ValueError):
        pass
    return out


def _read_pss(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


class MemPoll:
    """Samples the memory of a set of processes from a thread: per pid the last VmHWM seen (the
    kernel's peak, monotonic) and the peak of RssAnon + RssShmem ("anon": resident memory that is
    not a file's page cache; torch's workers pass batches through shared memory); over all pids
    the peak of the summed PSS and of the summed anon at one sampling instant."""

    def __init__(self, pids_fn, period=0.1, pss_every=4):
        self.pids_fn, self.period, self.pss_every = pids_fn, period, pss_every
        self.hwm, self.anon = {}, {}
        self.pss_sum_peak = 0
        self.anon_sum_peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._t.start()
        return self

    def sample(self, pss=False):
        pids = list(self.pids_fn())
        anon_sum, pss_sum = 0, 0
        for pid in pids:
            st = _read_status(pid)
            if "VmHWM" in st:
                self.hwm[pid] = max(self.hwm.get(pid, 0), st["VmHWM"])
                a = st.get("RssAnon", 0) + st.get("RssShmem", 0)
                self.anon[pid] = max(self.anon.get(pid, 0), a)
                anon_sum += a
            if pss:
                pss_sum += _read_pss(pid) or 0
        self.anon_sum_peak = max(self.anon_sum_peak, anon_sum)
        if pss:
            self.pss_sum_peak = max(self.pss_sum_peak, pss_sum)

    def _run(self):
        i = 0
        while not self._stop.wait(self.period):
            self.sample(pss=(i % self.pss_every == 0))
            i += 1

    def stop(self):
        self._stop.set()
        self._t.join()
        self.sample(pss=True)


def _cpu_now():
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime)


def _chan_stats(images):
    """Per-channel mean and std of the first 16 images of an NCHW float batch (output check)."""
    x = images[:16].float()
    return {"mean": [round(float(v), 4) for v in x.mean(dim=(0, 2, 3))],
            "std": [round(float(v), 4) for v in x.std(dim=(0, 2, 3))]}


def job_torch(spec):
    import torch
    import torchvision
    from torchvision import transforms as T

    torch.manual_seed(spec["seed"])
    me = os.getpid()
    holder = {"it": None}

    def pids():
        it = holder["it"]
        ws = getattr(it, "_workers", None) or [] if it is not None else []
        return [me] + [w.pid for w in ws if w.pid]

    limit = spec.get("batches")
    mem = MemPoll(pids).start()
    cpu0 = _cpu_now()
    t0 = time.perf_counter()
    tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    ds = torchvision.datasets.ImageFolder(spec["root"], transform=tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=spec["batch"], shuffle=True,
                                     num_workers=spec["workers"], persistent_workers=False,
                                     pin_memory=False)
    it = iter(dl)
    holder["it"] = it
    nb = len(dl) if not limit else min(limit, len(dl))
    n, t_first, shape, chan = 0, None, None, None
    worker_pids = [w.pid for w in getattr(it, "_workers", [])]
    for i in range(nb):
        images, labels = next(it)
        n += images.shape[0]
        if t_first is None:
            t_first = time.perf_counter() - t0
            shape, chan = list(images.shape), _chan_stats(images)
        if i == nb - 1:
            t_last = time.perf_counter() - t0
            mem.sample(pss=True)  # workers are still alive: their VmHWM is their peak
    del images, labels
    # The epoch's end: the next call finds no more data and joins (reaps) the workers.
    if nb == len(dl):
        try:
            next(it)
        except StopIteration:
            pass
    it._shutdown_workers()
    holder["it"] = None
    del it
    cpu1 = _cpu_now()
    mem.stop()
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    main_hwm = mem.hwm.get(me, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    worker_hwm = [mem.hwm.get(p) for p in worker_pids]
    return {"side": "torch", "images": n, "batches": nb, "seconds": t_last, "img_s": n / t_last,
            "first_batch_s": t_first, "cpu_s": (cpu1[0] - cpu0[0]) + (cpu1[1] - cpu0[1]),
            "cpu_self_s": cpu1[0] - cpu0[0], "cpu_workers_s": cpu1[1] - cpu0[1],
            "rss_main_kb": main_hwm, "rss_workers_kb": worker_hwm,
            "rss_sum_kb": main_hwm + sum(v or 0 for v in worker_hwm),
            "children_maxrss_kb": ch.ru_maxrss,
            "anon_peak_kb": {"main": mem.anon.get(me), "workers": [mem.anon.get(p) for p in worker_pids]},
            "anon_sum_peak_kb": mem.anon_sum_peak, "pss_sum_peak_kb": mem.pss_sum_peak,
            "shape": shape, "channels": chan, "torch": torch.__version__,
            "torchvision": torchvision.__version__}


def _import_softpipe(pp):
    sys.path.insert(0, pp)
    import softpipe
    softpipe.Loader  # noqa: B018 -- must exist
    return softpipe


def _loader_kwargs(spec):
    kw = {"batch_size": spec["batch"], "size": 224, "threads": 2, "crop": "random_resized",
          "flip": 0.5, "dtype": "float32", "layout": "NCHW", "seed": spec["seed"],
          "shuffle": "global", "normalize": True, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    kw.update(spec.get("options", {}))
    return kw


def _open_loader(softpipe, path, kw):
    try:
        return softpipe.Loader(path, **kw), kw
    except TypeError:  # an option this build does not take: fall back to the defaults' names
        kw2 = {k: v for k, v in kw.items() if k not in ("normalize", "mean", "std")}
        return softpipe.Loader(path, **kw2), kw2


def job_softpipe(spec):
    softpipe = _import_softpipe(spec["pythonpath"])
    import torch  # noqa: F401 -- imported on both sides (the loader yields torch tensors)

    me = os.getpid()
    mem = MemPoll(lambda: [me]).start()
    limit = spec.get("batches")
    kw = _loader_kwargs(spec)
    cpu0 = _cpu_now()
    t0 = time.perf_counter()
    ld, kw = _open_loader(softpipe, spec["ds"], kw)
    nb_epoch = len(ld)
    n, nb, t_first, shape, chan = 0, 0, None, None, None
    for images, labels in ld:
        n += images.shape[0]
        nb += 1
        if t_first is None:
            t_first = time.perf_counter() - t0
            shape, chan = list(images.shape), _chan_stats(images)
        if limit and nb >= limit:
            break
    t_last = time.perf_counter() - t0
    del images, labels
    stats = ld.stats()
    ld.close()
    cpu1 = _cpu_now()
    mem.stop()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"side": "softpipe", "images": n, "batches": nb, "batches_per_epoch": nb_epoch,
            "seconds": t_last, "img_s": n / t_last, "first_batch_s": t_first,
            "cpu_s": (cpu1[0] - cpu0[0]) + (cpu1[1] - cpu0[1]),
            "rss_kb": max(mem.hwm.get(me, 0), ru.ru_maxrss), "anon_peak_kb": mem.anon.get(me),
            "anon_sum_peak_kb": mem.anon_sum_peak, "pss_sum_peak_kb": mem.pss_sum_peak,
            "shape": shape, "channels": chan, "options": {k: v for k, v in kw.items()},
            "loader_stats": _jsonable(stats)}


def _jsonable(x):
    try:
        json.dumps(x)
        return x
    except TypeError:
        if isinstance(x, dict):
            return {str(k): _jsonable(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [_jsonable(v) for v in x]
        return repr(x)


def _batch_sig(b):
    """(ids, labels) of a raw batch from Loader.batches(), as lists."""
    import numpy as np
    images, labels, ids = b
    return np.asarray(ids).tolist(), np.asarray(labels).tolist()


def job_resume(spec):
    """load_state_dict() in the middle of an epoch: the state after half the batches, restored
    (1) in a fresh loader right after construction, as a resumed training run does, and (2) again
    and again in a running loader. Each call is timed, and so is the wait for the next batch; the
    batch after the restore must be the one that followed the saved position."""
    softpipe = _import_softpipe(spec["pythonpath"])
    import torch  # noqa: F401

    kw = _loader_kwargs(spec)
    ld, kw = _open_loader(softpipe, spec["ds"], kw)
    nb = len(ld)
    mid = max(1, nb // 2)
    gen = ld.batches()
    for _ in range(mid):
        b = next(gen)
    del b
    state = copy.deepcopy(ld.state_dict())
    want = _batch_sig(next(gen))
    gen.close()
    ld.close()

    res = {"batches_per_epoch": nb, "position": mid, "state": _jsonable(state)}
    ld = softpipe.Loader(spec["ds"], **kw)
    t0 = time.perf_counter()
    ld.load_state_dict(copy.deepcopy(state))
    res["fresh_load_s"] = time.perf_counter() - t0
    gen = ld.batches()
    t0 = time.perf_counter()
    got = _batch_sig(next(gen))
    res["fresh_next_batch_s"] = time.perf_counter() - t0
    ok = got == want
    loads, nexts = [], []
    for _ in range(spec.get("restores", 5)):
        next(gen)  # let the workers run ahead, then jump back
        time.sleep(0.2)
        t0 = time.perf_counter()
        ld.load_state_dict(copy.deepcopy(state))
        loads.append(time.perf_counter() - t0)
        gen = ld.batches()
        t0 = time.perf_counter()
        got = _batch_sig(next(gen))
        nexts.append(time.perf_counter() - t0)
        ok = ok and got == want
    gen.close()
    ld.close()
    res.update({"running_load_s": loads, "running_next_batch_s": nexts, "same_batch": ok,
                "load_s_max": max([res["fresh_load_s"]] + loads)})
    return res


def job_baseline(spec):
    """The resident size of a Python process that only imports torch (and softpipe)."""
    import torch  # noqa: F401
    import torchvision  # noqa: F401
    try:
        _import_softpipe(spec["pythonpath"])
    except Exception:
        pass
    st = _read_status(os.getpid())
    return {"rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "anon_kb": st.get("RssAnon", 0) + st.get("RssShmem", 0), "file_kb": st.get("RssFile")}


def job_check(spec):
    """Output check, untimed: the first images in dataset order through softpipe.Loader with
    crop="center", no flip, against torchvision's Resize(256) + CenterCrop(224) + ToTensor +
    Normalize of the same files (crop="center" is documented as that transform). Differences
    are in 8-bit levels: resampling filters and DCT-scaled decoding differ, so this shows that
    the two pipelines produce the same images (geometry, channel order, normalization, labels),
    not that they are bit-exact."""
    softpipe = _import_softpipe(spec["pythonpath"])
    import numpy as np
    import torch
    from PIL import Image
    from torchvision import transforms as T

    n = spec.get("n", 32)
    kw = _loader_kwargs(dict(spec, batch=n, options={"crop": "center", "flip": 0.0,
                                                     "shuffle": "none", "threads": 2}))
    ld, kw = _open_loader(softpipe, spec["ds"], kw)
    images, labels, ids = next(ld.batches())
    x = torch.from_numpy(np.array(images, copy=True)) if not hasattr(images, "__dlpack__") else \
        torch.utils.dlpack.from_dlpack(images).clone()
    labels = np.asarray(labels).tolist()
    ids = np.asarray(ids).tolist()
    ld.close()
    dsx = softpipe.Dataset(spec["ds"])
    classes = sorted(d for d in os.listdir(spec["root"]) if os.path.isdir(os.path.join(spec["root"], d)))
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    mad, mx, label_ok = [], 0.0, True
    for j, i in enumerate(ids):
        key = dsx.key(int(i))
        with Image.open(os.path.join(spec["root"], key)) as im:
            ref = tf(im.convert("RGB"))
        d = ((x[j] - ref).abs() * std * 255)
        mad.append(float(d.mean()))
        mx = max(mx, float(d.max()))
        label_ok = label_ok and classes.index(key.split("/")[0]) == labels[j]
    return {"images": len(ids), "mean_abs_diff_levels": statistics.mean(mad),
            "worst_image_mean_abs_diff_levels": max(mad), "max_abs_diff_levels": mx,
            "labels_match": label_ok, "shape": list(x.shape), "dtype": str(x.dtype)}


JOBS = {"check": job_check, "torch": job_torch, "softpipe": job_softpipe, "resume": job_resume, "baseline": job_baseline}


# ====================================================================== parent side

def _busy_s():
    """CPU-seconds the whole machine has spent busy (all processes, /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_s, threshold=0.3, window=0.5):
    """Waits, up to max_s seconds, until other processes keep fewer than `threshold` cores busy
    over a `window`-second sample. Returns (seconds waited, busy cores at the last sample)."""
    t0 = time.perf_counter()
    busy = None
    while True:
        b0, w0 = _busy_s(), time.perf_counter()
        time.sleep(window)
        busy = (_busy_s() - b0) / (time.perf_counter() - w0)
        if busy < threshold or time.perf_counter() - t0 >= max_s:
            return time.perf_counter() - t0, busy


def run_proc(cmd, timeout=None):
    """Runs cmd in its own session; returns (rc, stdout, stderr, wall_s, rusage of the child
    and its reaped descendants from wait4). Kills its process group after `timeout` seconds."""
    timeout = timeout or TIMEOUT_S
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        b0 = _busy_s()
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, start_new_session=True)
        rc, ru = None, None
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                rc = os.waitstatus_to_exitcode(status)
                break
            if time.perf_counter() - t0 > timeout:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _, status, ru = os.wait4(p.pid, 0)
                rc = 124
                break
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        # Cores that other processes kept busy meanwhile (the machine is shared): a noise gauge.
        foreign = max(0.0, _busy_s() - b0 - (ru.ru_utime + ru.ru_stime)) / wall if ru else None
        LAST_FOREIGN[0] = foreign
        p.returncode = rc  # reaped here: keep Popen from waiting again
        fo.seek(0)
        fe.seek(0)
        return rc, fo.read().decode(errors="replace"), fe.read().decode(errors="replace"), wall, ru


def run_job(spec):
    rc, out, err, wall, ru = run_proc([sys.executable, os.path.abspath(__file__), "--_job",
                                       json.dumps(spec)])
    if rc != 0:
        raise RuntimeError("job %s exited %d: %s" % (spec["job"], rc, err.strip()[-1500:]))
    res = json.loads(out.strip().splitlines()[-1])
    res["process_wall_s"] = wall
    res["process_cpu_s"] = ru.ru_utime + ru.ru_stime
    res["process_maxrss_kb"] = ru.ru_maxrss
    return res


def run_json_cmd(cmd):
    rc, out, err, wall, ru = run_proc(cmd)
    if rc != 0:
        raise RuntimeError("%s exited %d: %s" % (" ".join(cmd), rc, err.strip()[-1500:]))
    try:
        res = json.loads(out)
    except ValueError:
        res = json.loads(out.strip().splitlines()[-1])
    return res, wall, ru


def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": values}


def fmt(s, nd, scale=1.0):
    if s is None:
        return "skipped"
    return "%.*f [%.*f..%.*f]" % (nd, s["median"] * scale, nd, s["min"] * scale, nd, s["max"] * scale)


def paired(a, b, f):
    """Summary of f(a_i, b_i) over the repeats where both exist."""
    vals = [f(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    return summary(vals) if vals else None


# ------------------------------------------------------------------ inputs

def image_set(count, seed, workers):
    sys.path.insert(0, os.path.dirname(GEN))
    import gen_images  # the generator defines the recipe; a cached set must match it

    src = os.path.join(DATA, "images_n%d_s%d" % (count, seed))
    sp = gen_images.stats_path(src)
    want = {"count": count, "seed": seed, "classes": 10, "quality": 90,
            "recipe_version": gen_images.RECIPE_VERSION, "grain_sigma": gen_images.GRAIN_SIGMA}
    stats = None
    if os.path.exists(sp):
        with open(sp) as f:
            stats = json.load(f)
        if any(stats.get("params", {}).get(k) != v for k, v in want.items()):
            stats = None
    if stats is None:
        print("generating %d images into %s ..." % (count, src), flush=True)
        os.makedirs(DATA, exist_ok=True)
        subprocess.run([sys.executable, GEN, src, "--count", str(count), "--seed", str(seed),
                        "--workers", str(workers), "--force"], check=True)
        with open(sp) as f:
            stats = json.load(f)
    return src, stats


def list_images(top):
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.lower().endswith((".jpg", ".jpeg")):
                out.append(os.path.relpath(os.path.join(dirpath, fn), top))
    return out


def subset(src, files, n):
    """The first n images by index (img_IIIIII, so every class), hard-linked into WORK."""
    pick = sorted(files, key=lambda f: (os.path.basename(f), f))[:n]
    dst = os.path.join(WORK, "%s_first%d" % (os.path.basename(src), n))
    if os.path.isdir(dst) and len(list_images(dst)) == len(pick):
        return dst, sorted(pick)
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    for f in pick:
        os.makedirs(os.path.join(dst, os.path.dirname(f)), exist_ok=True)
        try:
            os.link(os.path.join(src, f), os.path.join(dst, f))
        except OSError:
            shutil.copyfile(os.path.join(src, f), os.path.join(dst, f))
    return dst, sorted(pick)


def image_stats(top, files):
    """Count, classes, bytes and mean pixel size of the images actually used."""
    from PIL import Image
    nbytes, w, h = 0, 0, 0
    for f in files:
        p = os.path.join(top, f)
        nbytes += os.path.getsize(p)
        with Image.open(p) as im:
            w += im.size[0]
            h += im.size[1]
    n = len(files)
    return {"files": n, "classes": len({os.path.dirname(f) for f in files}),
            "bytes": nbytes, "mean_kb": nbytes / n / 1e3, "mean_width": w / n,
            "mean_height": h / n, "total_mb": nbytes / 1e6}


def warm(paths):
    total = 0
    for p in paths:
        with open(p, "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                total += len(b)
    return total


def build_ceiling():
    """cc -O2 bench/decode_ceiling.c into bench/data/ when the source is newer than the binary."""
    if (os.path.exists(CEILING_BIN)
            and os.path.getmtime(CEILING_BIN) >= os.path.getmtime(CEILING_SRC)):
        return CEILING_BIN, None
    cc = os.environ.get("CC", "cc")
    cmd = [cc, "-O2", "-o", CEILING_BIN, CEILING_SRC, "-lturbojpeg", "-lpthread"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        return None, "%s failed: %s" % (" ".join(cmd), p.stderr.decode(errors="replace")[-1000:])
    return CEILING_BIN, None


def softpipe_sides(bin_, pythonpath):
    """(has_pack, has_bench_load, python_loader_error)."""
    has_pack = has_bl = False
    if bin_:
        try:
            has_pack = subprocess.run([bin_, "pack", "--help"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, timeout=30).returncode == 0
            has_bl = subprocess.run([bin_, "bench-load", "--help"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            pass
    p = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, %r); import softpipe; "
                        "softpipe.Loader" % pythonpath], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    err = None
    if p.returncode != 0:
        lines = p.stderr.decode(errors="replace").strip().splitlines()
        err = lines[-1] if lines else "import failed"
    return has_pack, has_bl, err


def bench_load_rate(res, wall, ru):
    """img/s, seconds and CPU seconds from `softpipe bench-load --json`, whatever it names them;
    falls back to the process's wall clock and rusage."""
    def find(keys):
        for k in keys:
            if isinstance(res, dict) and isinstance(res.get(k), (int, float)):
                return float(res[k])
        return None
    n = find(["samples", "images", "images_total"])
    secs = find(["seconds", "wall_s", "elapsed_s", "time_s"])
    rate = find(["img_s", "images_per_s", "samples_per_s", "throughput"])
    if rate is None and n and secs:
        rate = n / secs
    cpu = find(["cpu_s", "cpu_seconds"])
    proc_cpu = ru.ru_utime + ru.ru_stime
    if rate is None:
        rate = (n or 0) / wall if n else None
    return {"img_s": rate, "images": n, "seconds": secs, "cpu_s": cpu if cpu is not None else proc_cpu,
            "process_cpu_s": proc_cpu, "process_wall_s": wall, "process_maxrss_kb": ru.ru_maxrss}


# ------------------------------------------------------------------ the run

def main():
    global TIMEOUT_S
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--_job", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=10000, help="images in the generated set (default 10000)")
    ap.add_argument("--seed", type=int, default=0, help="image-set seed (default 0)")
    ap.add_argument("--images", type=int, default=0, help="use only the first N images (default: all)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats of each measurement (default 3)")
    ap.add_argument("--batch", type=int, default=256, help="batch size (default 256)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    ap.add_argument("--only", default="loader,ceiling,ablation",
                    help="comma list of loader,ceiling,ablation (default: all)")
    ap.add_argument("--no-ceiling-variants", action="store_true",
                    help="run only the full-size accurate ceiling, not scale 1/2 / fast")
    ap.add_argument("--ablation-engine", choices=["auto", "cli", "python"], default="auto",
                    help="bench-load (C) or the Python Loader for (c)/(d) (default: cli when present)")
    ap.add_argument("--quiet-wait", type=float, default=30,
                    help="before each measurement wait up to this many seconds for other processes "
                         "to leave the CPUs (< 0.3 cores busy); 0: do not wait (default 30)")
    ap.add_argument("--gen-workers", type=int, default=2, help="workers for the image generator")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--table", metavar="FILE", help="only print the table of a run saved with --json")
    ap.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds allowed per subprocess")
    a = ap.parse_args()
    if a._job:
        spec = json.loads(a._job)
        print(json.dumps(JOBS[spec["job"]](spec)), flush=True)
        return 0
    TIMEOUT_S = a.timeout
    if a.table:  # re-print (and re-summarize) a saved run
        with open(a.table) as f:
            out = json.load(f)
        out["summary"] = summarize(out["runs"], a, (out.get("baseline_python_torch") or {}).get("anon_kb"))
        print_table(out)
        return 0
    parts = set(a.only.split(","))

    bin_ = os.environ.get("SOFTPIPE_BIN", os.path.join(ROOT, "build", "softpipe"))
    if not (os.path.isfile(bin_) and os.access(bin_, os.X_OK)):
        bin_ = None
    pythonpath = os.environ.get("SOFTPIPE_PYTHONPATH", os.path.join(ROOT, "build", "python"))
    has_pack, has_bl, py_err = softpipe_sides(bin_, pythonpath)
    notes = []
    if not bin_:
        notes.append("softpipe binary not found (build/softpipe or $SOFTPIPE_BIN)")
    elif not has_bl:
        notes.append("`softpipe bench-load` not available in %s" % bin_)
    if py_err:
        notes.append("softpipe.Loader not importable from %s: %s" % (pythonpath, py_err))
    engine = a.ablation_engine
    if engine == "auto":
        engine = "cli" if has_bl else "python"
    if engine == "cli" and not has_bl or engine == "python" and py_err:
        engine = None

    os.makedirs(WORK, exist_ok=True)
    src, img = image_set(a.count, a.seed, a.gen_workers)
    files = list_images(src)
    top = src
    if a.images and a.images < len(files):
        top, files = subset(src, files, a.images)
    ist = image_stats(top, files)
    t0 = time.perf_counter()
    nbytes = warm([os.path.join(top, f) for f in files])
    print("image set: %d files, %.1f MB, warmed in %.2f s" % (len(files), nbytes / 1e6,
                                                             time.perf_counter() - t0), flush=True)

    ds = None
    if has_pack:
        ds = os.path.join(WORK, "ds_" + os.path.basename(top))
        if os.path.exists(ds):
            shutil.rmtree(ds)
        print("packing %s -> %s (untimed) ..." % (top, ds), flush=True)
        rc, _, err, wall, _ = run_proc([bin_, "pack", top, "-o", ds])
        if rc != 0:
            notes.append("softpipe pack failed: %s" % err.strip()[-500:])
            ds = None
        else:
            warm([os.path.join(dp, f) for dp, _, fs in os.walk(ds) for f in fs])
    ds_rst = None
    if ds is not None:
        ds_rst = ds + "_rst"
        if os.path.exists(ds_rst):
            shutil.rmtree(ds_rst)
        print("packing %s -> %s with --restart-markers (untimed) ..." % (top, ds_rst), flush=True)
        rc, _, err, wall, _ = run_proc([bin_, "pack", top, "-o", ds_rst, "--restart-markers"])
        if rc != 0:
            notes.append("softpipe pack --restart-markers failed: %s" % err.strip()[-500:])
            ds_rst = None
        else:
            warm([os.path.join(dp, f) for dp, _, fs in os.walk(ds_rst) for f in fs])
    ceiling_bin, why = build_ceiling()
    if why:
        notes.append(why)

    sp_py = ds is not None and py_err is None
    # The sides of one repeat, in order; odd repeats run them reversed.
    sides = []
    if "loader" in parts:
        sides.append("torch")
        if sp_py:
            sides += ["softpipe", "resume"]
    if "ceiling" in parts and ceiling_bin:
        sides += [k for k, _, _ in (CEILINGS[:1] if a.no_ceiling_variants else CEILINGS)]
    if ("ceiling" in parts or "ablation" in parts) and ds and engine:
        abl = ABLATIONS if "ablation" in parts else [ABLATIONS[0], ABLATIONS[2]]
        sides += ["abl:%s" % name for name, _, _ in abl]

    base = {"seed": a.seed, "batch": a.batch, "pythonpath": pythonpath}
    results = {s: [] for s in sides}

    def run_side(s, warmup=False):
        lim = {"batches": 2} if warmup else {}
        if s == "torch":
            return run_job(dict(base, job="torch", root=top, workers=a.workers, **lim))
        if s == "softpipe":
            return run_job(dict(base, job="softpipe", ds=ds, options={"threads": 2}, **lim))
        if s == "resume":
            return None if warmup else run_job(dict(base, job="resume", ds=ds, options={"threads": 2}))
        if s.startswith("ceiling"):
            if warmup:
                return None
            flags = dict((k, f) for k, _, f in CEILINGS)[s]
            res, wall, ru = run_json_cmd([ceiling_bin, top, "--threads", "2", "--repeat", "1",
                                          "--no-warmup"] + flags)
            res["img_s"] = res["img_s"][0]
            res["process_wall_s"] = wall
            return res
        if s.startswith("abl:"):
            name = s[4:]
            opts, flags = [(o, f) for n, o, f in ABLATIONS if n == name][0]
            ds_use = ds_rst if name == RST_ABLATION else ds
            if ds_use is None:
                raise RuntimeError("no dataset packed with --restart-markers")
            if engine == "cli":
                cmd = [bin_, "bench-load", ds_use, "--json"] + flags
                if warmup:
                    cmd += ["--batches", "2"]
                res, wall, ru = run_json_cmd(cmd)
                out = bench_load_rate(res, wall, ru)
                out["raw"] = res
                out["command"] = cmd
                return out
            return run_job(dict(base, job="softpipe", ds=ds_use, options=opts, **lim))
        raise ValueError(s)

    errors = {}
    print("warm-up (2 batches of each loader, untimed) ...", flush=True)
    first_abl = next((s for s in sides if s.startswith("abl:")), None)
    for s in sides:
        if s in ("torch", "softpipe", first_abl):
            try:
                run_side(s, warmup=True)
            except Exception as e:  # reported with the timed runs
                print("  warm-up of %s failed: %s" % (s, e), flush=True)
    for r in range(a.repeat):
        order = sides if r % 2 == 0 else sides[::-1]
        for s in order:
            print("  repeat %d/%d: %s ..." % (r + 1, a.repeat, s), end="", flush=True)
            waited = wait_quiet(a.quiet_wait) if a.quiet_wait > 0 else (0.0, None)
            if waited[0] >= 1:
                print(" (waited %.0f s for other processes)" % waited[0], end="", flush=True)
            try:
                res = run_side(s)
                v = res.get("img_s") if res else None
                if res is not None:
                    res["foreign_cores"] = LAST_FOREIGN[0]
                print(" %s%s" % ("%.0f img/s" % v if v else "done",
                                 "  (other processes: %.2f cores busy)" % LAST_FOREIGN[0]
                                 if LAST_FOREIGN[0] is not None else ""), flush=True)
            except Exception as e:
                res = None
                errors.setdefault(s, str(e))
                print(" FAILED: %s" % str(e)[:300], flush=True)
            results[s].append(res)

    check = None
    if sp_py and "loader" in parts:
        try:
            check = run_job(dict(base, job="check", ds=ds, root=top))
        except Exception as e:
            check = {"error": str(e)}
    try:
        baseline = run_job(dict(base, job="baseline"))
    except Exception as e:
        baseline = {"error": str(e)}

    out = {"benchmark": "bench_load", "repeat": a.repeat, "images": len(files),
           "image_set": img, "images_used": ist, "images_dir": top, "dataset": ds,
           "softpipe_bin": bin_, "pythonpath": pythonpath, "engine_c_d": engine,
           "notes": notes, "errors": errors, "baseline_python_torch_rss_kb": baseline.get("rss_kb"),
           "baseline_python_torch": baseline,
           "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                    "python": sys.version.split()[0], "platform": platform.platform()},
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "check": check, "runs": results}
    out["summary"] = summarize(results, a, baseline.get("anon_kb"))
    print_table(out)
    if a.json:
        d = os.path.dirname(os.path.abspath(a.json))
        os.makedirs(d, exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
        print("results written to %s" % a.json)
    return 0


def _col(results, side, key):
    return [(r or {}).get(key) for r in results.get(side, [])]


def summarize(results, a, base_kb=None):
    S = {}
    t, sp = results.get("torch", []), results.get("softpipe", [])

    def per_img(rs):
        return [r["cpu_s"] / r["images"] if r else None for r in rs]

    if t:
        S["torch_img_s"] = summary(_col(results, "torch", "img_s"))
        S["torch_cpu_per_img"] = summary(per_img(t))
        S["torch_rss_mb"] = summary([r["rss_sum_kb"] / 1024 if r else None for r in t])
        S["torch_anon_mb"] = summary([r["anon_sum_peak_kb"] / 1024 if r else None for r in t])
        S["torch_pss_mb"] = summary([r["pss_sum_peak_kb"] / 1024 if r else None for r in t])
        S["torch_first_s"] = summary(_col(results, "torch", "first_batch_s"))
    if sp:
        S["sp_img_s"] = summary(_col(results, "softpipe", "img_s"))
        S["sp_cpu_per_img"] = summary(per_img(sp))
        S["sp_rss_mb"] = summary([r["rss_kb"] / 1024 if r else None for r in sp])
        S["sp_anon_mb"] = summary([r["anon_sum_peak_kb"] / 1024 if r else None for r in sp])
        S["sp_pss_mb"] = summary([r["pss_sum_peak_kb"] / 1024 if r else None for r in sp])
        S["sp_first_s"] = summary(_col(results, "softpipe", "first_batch_s"))
        if t:
            S["ratio_img_s"] = paired(sp, t, lambda x, y: x["img_s"] / y["img_s"])
            S["ratio_cpu"] = paired(sp, t, lambda x, y: (y["cpu_s"] / y["images"]) / (x["cpu_s"] / x["images"]))
            S["ratio_rss"] = paired(sp, t, lambda x, y: y["rss_sum_kb"] / x["rss_kb"])
            S["ratio_anon"] = paired(sp, t, lambda x, y: y["anon_sum_peak_kb"] / max(1, x["anon_sum_peak_kb"]))
            S["ratio_pss"] = paired(sp, t, lambda x, y: y["pss_sum_peak_kb"] / max(1, x["pss_sum_peak_kb"]))
            if base_kb:  # each process's peak anon RSS less an idle Python's that imported torch
                S["sp_own_mb"] = summary([(r["anon_sum_peak_kb"] - base_kb) / 1024 if r else None for r in sp])
                S["torch_own_mb"] = summary([(r["anon_sum_peak_kb"] - base_kb * (1 + len(r["rss_workers_kb"]))) / 1024
                                             if r else None for r in t])
                S["ratio_own"] = paired(sp, t, lambda x, y: (y["anon_sum_peak_kb"] - base_kb * (1 + len(y["rss_workers_kb"])))
                                        / max(1, x["anon_sum_peak_kb"] - base_kb))
            S["ratio_first"] = paired(sp, t, lambda x, y: y["first_batch_s"] / x["first_batch_s"])
            S["pass_img_s"] = S["ratio_img_s"]["median"] >= 3 if S["ratio_img_s"] else None
            S["pass_cpu"] = S["ratio_cpu"]["median"] >= 3 if S["ratio_cpu"] else None
            S["pass_rss"] = S["ratio_rss"]["median"] >= 4 if S["ratio_rss"] else None
        S["pass_first"] = S["sp_first_s"]["median"] < 1.0 if S["sp_first_s"] else None
    rs = [r for r in results.get("resume", []) if r]
    if rs:
        S["resume_load_s"] = summary([v for r in rs for v in [r["fresh_load_s"]] + r["running_load_s"]])
        S["resume_fresh_load_s"] = summary([r["fresh_load_s"] for r in rs])
        S["resume_next_s"] = summary([v for r in rs for v in [r["fresh_next_batch_s"]] + r["running_next_batch_s"]])
        S["resume_same_batch"] = all(r["same_batch"] for r in rs)
        S["resume_position"] = "%d of %d batches" % (rs[0]["position"], rs[0]["batches_per_epoch"])
        S["pass_resume"] = S["resume_load_s"]["max"] < 0.05 and S["resume_same_batch"]
    for k, _, _ in CEILINGS:
        if results.get(k):
            S[k + "_img_s"] = summary(_col(results, k, "img_s"))
            S[k + "_cpu_per_img"] = summary([r["cpu_seconds"][0] / r["images"] if r else None
                                             for r in results[k]])
    ceil = results.get("ceiling", [])
    dflt = results.get("abl:" + ABLATIONS[0][0], [])
    for name, _, _ in ABLATIONS:
        rr = results.get("abl:" + name)
        if not rr:
            continue
        key = "abl:" + name
        S[key] = {"img_s": summary(_col(results, key, "img_s")),
                  "cpu_per_img": summary([r["cpu_s"] / (r.get("images") or 1) if r and r.get("images") else None
                                          for r in rr]),
                  "vs_default": paired(rr, dflt, lambda x, y: x["img_s"] / y["img_s"]),
                  "vs_ceiling": paired(rr, ceil, lambda x, y: x["img_s"] / y["img_s"])}
    for name, _, _ in ABLATIONS:
        rr, key = results.get("abl:" + name), "abl:" + name
        if rr and ceil:  # CPU per image: robust against other processes taking cores
            S[key]["cpu_vs_ceiling"] = paired(rr, ceil, lambda x, y: (y["cpu_seconds"][0] / y["images"])
                                              / (x["cpu_s"] / x["images"]))
    if sp and ceil:
        S["py_cpu_vs_ceiling"] = paired(sp, ceil, lambda x, y: (y["cpu_seconds"][0] / y["images"])
                                        / (x["cpu_s"] / x["images"]))
    d = S.get("abl:" + ABLATIONS[0][0])
    if d and d["vs_ceiling"]:
        S["pass_ceiling"] = d["vs_ceiling"]["median"] >= 1.1
    nc = S.get("abl:crop_decode off")
    if nc and nc["vs_ceiling"]:
        S["pass_ceiling_nocrop"] = nc["vs_ceiling"]["median"] >= 0.85
    if sp and ceil:
        S["py_vs_ceiling"] = paired(sp, ceil, lambda x, y: x["img_s"] / y["img_s"])
    if t and ceil:
        S["torch_vs_ceiling"] = paired(t, ceil, lambda x, y: x["img_s"] / y["img_s"])
    return S


def print_table(out):
    S, img, ist = out["summary"], out["image_set"], out["images_used"]
    print()
    print("image set: %d files in %d classes, mean %.1f KB/file, mean %.0f x %.0f px, %.1f MB "
          "(generated set: %d files, seed %d, digest %s)"
          % (ist["files"], ist["classes"], ist["mean_kb"], ist["mean_width"], ist["mean_height"],
             ist["total_mb"], img["files"], img["params"]["seed"], img["digest_sha256"][:16]))
    print("median [min..max] over %d repeats; ratios are paired per repeat and say how many times "
          "better softpipe is (higher is better)" % out["repeat"])
    PF = {True: "PASS", False: "FAIL", None: ""}
    rows = []
    if "torch_img_s" in S:
        rows.append(("(b) img/s, one epoch", fmt(S.get("sp_img_s"), 0), "torch DataLoader, 2 workers",
                     fmt(S["torch_img_s"], 0), fmt(S.get("ratio_img_s"), 2), ">= 3x", S.get("pass_img_s")))
        rows.append(("(b) CPU ms/img", fmt(S.get("sp_cpu_per_img"), 2, 1e3), "torch (main + workers)",
                     fmt(S["torch_cpu_per_img"], 2, 1e3), fmt(S.get("ratio_cpu"), 2), "<= 1/3",
                     S.get("pass_cpu")))
        rows.append(("(b) peak RSS MB", fmt(S.get("sp_rss_mb"), 0), "torch, sum of VmHWM",
                     fmt(S["torch_rss_mb"], 0), fmt(S.get("ratio_rss"), 2), "<= 1/4", S.get("pass_rss")))
        rows.append(("  (context) peak anon+shmem RSS MB", fmt(S.get("sp_anon_mb"), 0), "torch, summed",
                     fmt(S["torch_anon_mb"], 0), fmt(S.get("ratio_anon"), 2), "", None))
        if "sp_own_mb" in S:
            rows.append(("  (context) same - idle py+torch's, MB", fmt(S.get("sp_own_mb"), 0),
                         "torch, per process, summed", fmt(S["torch_own_mb"], 0), fmt(S.get("ratio_own"), 2), "", None))
        rows.append(("  (context) peak PSS MB", fmt(S.get("sp_pss_mb"), 0), "torch, summed",
                     fmt(S["torch_pss_mb"], 0), fmt(S.get("ratio_pss"), 2), "", None))
        rows.append(("(b) first batch s", fmt(S.get("sp_first_s"), 3), "torch",
                     fmt(S["torch_first_s"], 3), fmt(S.get("ratio_first"), 1), "< 1 s", S.get("pass_first")))
    if "resume_load_s" in S:
        rows.append(("(b) load_state_dict ms", fmt(S["resume_load_s"], 2, 1e3),
                     "at %s" % S["resume_position"], "", "",
                     "< 50 ms" + ("" if S["resume_same_batch"] else ", SAME BATCH: NO"),
                     S.get("pass_resume")))
        rows.append(("  (context) next batch after it, ms", fmt(S["resume_next_s"], 1, 1e3), "", "", "", "", None))
    if "ceiling_img_s" in S:
        rows.append(("(c) decode ceiling img/s", "", "tjDecompress2 full size, 2 thr",
                     fmt(S["ceiling_img_s"], 0), "", "", None))
        rows.append(("  (context) its CPU ms/img", "", "", fmt(S["ceiling_cpu_per_img"], 3, 1e3), "", "", None))
        for k, label, _ in CEILINGS[1:]:
            if k + "_img_s" in S:
                rows.append(("  (context) ceiling, " + label, "", "", fmt(S[k + "_img_s"], 0) + ", "
                             + fmt(S[k + "_cpu_per_img"], 3, 1e3).split(" ")[0] + " ms/img", "", "", None))
    d = S.get("abl:" + ABLATIONS[0][0])
    if d:
        rows.append(("(c) pipeline vs ceiling", fmt(d["img_s"], 0), "bench-load, crop-aware decode",
                     "", fmt(d["vs_ceiling"], 2), ">= 1.1x", S.get("pass_ceiling")))
    if d and d.get("cpu_vs_ceiling"):
        rows.append(("  (context) same by CPU ms/img", fmt(d["cpu_per_img"], 3, 1e3), "ceiling's / softpipe's", "",
                     fmt(d["cpu_vs_ceiling"], 2), "", None))
    nc = S.get("abl:crop_decode off")
    if nc:
        rows.append(("(c) same, crop_decode off", fmt(nc["img_s"], 0), "", "",
                     fmt(nc["vs_ceiling"], 2), ">= 0.85x", S.get("pass_ceiling_nocrop")))
        if nc.get("cpu_vs_ceiling"):
            rows.append(("  (context) same by CPU ms/img", fmt(nc["cpu_per_img"], 3, 1e3), "", "",
                         fmt(nc["cpu_vs_ceiling"], 2), "", None))
    if "py_vs_ceiling" in S:
        rows.append(("  (context) Python Loader vs ceiling", "", "", "", fmt(S["py_vs_ceiling"], 2), "", None))
    if S.get("py_cpu_vs_ceiling"):
        rows.append(("  (context) same by CPU ms/img", "", "", "", fmt(S["py_cpu_vs_ceiling"], 2), "", None))
    if "torch_vs_ceiling" in S:
        rows.append(("  (context) torch vs ceiling", "", "", "", fmt(S["torch_vs_ceiling"], 2), "", None))
    head = ("measurement", "softpipe", "peer", "peer value", "ratio", "goal", "")
    table = [head] + [r[:6] + (PF[r[6]],) for r in rows]
    w = [max(len(str(r[i])) for r in table) for i in range(len(head))]
    for r in table:
        print("  ".join(str(v).ljust(w[i]) for i, v in enumerate(r)).rstrip())

    abl = [(n, S["abl:" + n]) for n, _, _ in ABLATIONS if "abl:" + n in S]
    if abl:
        print()
        print("(d) ablation (%s, threads 2 unless named): what each optimization gives"
              % ("softpipe bench-load, C" if out["engine_c_d"] == "cli" else "Python Loader"))
        head = ("variant", "img/s", "CPU ms/img", "vs default", "vs ceiling", "vs ceiling, by CPU/img")
        table = [head] + [(n, fmt(v["img_s"], 0), fmt(v["cpu_per_img"], 3, 1e3),
                           fmt(v["vs_default"], 2), fmt(v["vs_ceiling"], 2),
                           fmt(v.get("cpu_vs_ceiling"), 2)) for n, v in abl]
        w = [max(len(str(r[i])) for r in table) for i in range(len(head))]
        for r in table:
            print("  ".join(str(v).ljust(w[i]) for i, v in enumerate(r)).rstrip())
    sp = [r for r in out["runs"].get("softpipe", []) if r]
    tr = [r for r in out["runs"].get("torch", []) if r]
    print()
    ck = out.get("check")
    if ck and "error" not in ck:
        print("output check (untimed; first %d images, softpipe crop=\"center\" vs torchvision Resize(256)+"
              "CenterCrop(224), same normalization): mean |diff| %.2f levels of 255 (worst image %.2f, "
              "max pixel %.0f), labels %s" % (ck["images"], ck["mean_abs_diff_levels"],
                                              ck["worst_image_mean_abs_diff_levels"],
                                              ck["max_abs_diff_levels"],
                                              "match" if ck["labels_match"] else "DIFFER"))
    elif ck:
        print("output check failed: %s" % ck["error"][:500])
    if tr and sp:
        print("batch: softpipe %s %s, torch %s" % (sp[0]["shape"], sp[0]["options"].get("dtype"), tr[0]["shape"]))
    if sp:
        r = sp[0]
        print("softpipe peak RSS split (first repeat): VmHWM %.0f MB, of which anon+shmem at most %.0f MB; the rest is "
              "file-backed: shared libraries and the memory-mapped shards' pages it touched (page cache)"
              % (r["rss_kb"] / 1024, (r["anon_peak_kb"] or 0) / 1024))
    if tr:
        r = tr[0]
        b = out.get("baseline_python_torch") or {}
        print("torch peak RSS split (first repeat): main %.0f MB + workers %s MB; "
              "an idle Python process that imported torch: %s MB (anon %s MB)"
              % (r["rss_main_kb"] / 1024, [round((v or 0) / 1024) for v in r["rss_workers_kb"]],
                 "%.0f" % (b["rss_kb"] / 1024) if b.get("rss_kb") else "?",
                 "%.0f" % (b["anon_kb"] / 1024) if b.get("anon_kb") else "?"))
    if sp and sp[0].get("loader_stats"):
        print("softpipe stats() (first repeat): %s" % json.dumps(sp[0]["loader_stats"])[:600])
    fc = [r.get("foreign_cores") for rs in out["runs"].values() for r in rs if r and r.get("foreign_cores") is not None]
    if fc:
        print("other processes on this machine kept %.2f [%.2f..%.2f] cores busy during the measurements "
              "(of %d); with > 0.3 the absolute numbers are low, only the paired ratios mean much"
              % (statistics.median(fc), min(fc), max(fc), os.cpu_count()))
    for n in out["notes"]:
        print("note: %s" % n)
    for s, e in out["errors"].items():
        print("ERROR: %s: %s" % (s, e[:500]))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        raise
    except Exception as e:  # goals are reported, not asserted; a broken run says why
        import traceback
        traceback.print_exc()
        print("bench_load: %s" % e)
        sys.exit(0 if "--_job" not in sys.argv else 1)
