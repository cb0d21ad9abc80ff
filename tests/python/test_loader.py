"""The Python loader: tensors without copies, determinism, resume across processes, lifetime,
distributed slices, filters, bad samples, and resize quality against torchvision."""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import softpipe

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from torchvision import transforms as T  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def smooth_image(w, h, seed):
    """A photo-like smooth image (gradients + blobs), so resampling differences are meaningful."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.005, 0.05, 2).tolist() + [rng.uniform(0, 6.28)]
        img[..., c] = 127 + 100 * np.sin(x * fx + y * fy + ph)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(8, min(w, h) / 3)
        mask = ((x - cx) ** 2 + (y - cy) ** 2) < r * r
        img[mask] = rng.uniform(0, 255, 3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    src = root / "src"
    for i in range(60):
        d = src / f"class{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        w, h = 120 + (i * 37) % 300, 100 + (i * 53) % 260
        smooth_image(w, h, i).save(d / f"{i:03d}.jpg", quality=92)
    out = root / "ds"
    softpipe.pack(str(src), str(out), block_size=64 << 10)
    return src, out


def epoch_digests(loader):
    return [(images.numpy().tobytes().__hash__(), labels.numpy().tobytes()) for images, labels in loader]


def test_tensors_view_batch_memory(dataset):
    _, ds = dataset
    ld = softpipe.Loader(str(ds), batch_size=16, size=32, threads=2, seed=1)
    assert len(ld) == 4
    images, labels = next(iter(ld))
    assert isinstance(images, torch.Tensor) and images.dtype == torch.float32
    assert tuple(images.shape) == (16, 3, 32, 32) and labels.dtype == torch.int64
    assert set(labels.tolist()) <= {0, 1, 2}
    # normalized ImageNet-style: values around zero, within the reachable range
    assert images.min() >= (0 - max(MEAN)) / min(STD) - 1e-4 and images.max() <= (1 - min(MEAN)) / min(STD) + 1e-4
    raw = next(ld.batches())
    arr = np.asarray(raw[0])
    assert arr.shape == (16, 3, 32, 32) and not arr.flags["OWNDATA"]
    t = torch.from_dlpack(raw[0])
    assert t.data_ptr() == raw[0].address  # the same memory: no copy


def test_dtypes_and_layouts(dataset):
    _, ds = dataset
    for dtype, tdtype in (("uint8", torch.uint8), ("float16", torch.float16)):
        ld = softpipe.Loader(str(ds), batch_size=8, size=(24, 40), dtype=dtype, layout="NHWC", seed=3)
        images, _ = next(iter(ld))
        assert images.dtype == tdtype and tuple(images.shape) == (8, 24, 40, 3)
    a = softpipe.Loader(str(ds), batch_size=8, size=24, dtype="float32", layout="NCHW", seed=3)
    b = softpipe.Loader(str(ds), batch_size=8, size=24, dtype="float32", layout="NHWC", seed=3)
    x, _ = next(iter(a))
    y, _ = next(iter(b))
    assert torch.equal(x, y.permute(0, 3, 1, 2))


def test_deterministic_for_any_thread_count(dataset):
    _, ds = dataset
    runs = [epoch_digests(softpipe.Loader(str(ds), batch_size=8, size=32, threads=t, seed=7))
            for t in (1, 2, 4)]
    assert runs[0] == runs[1] == runs[2]
    other = epoch_digests(softpipe.Loader(str(ds), batch_size=8, size=32, threads=2, seed=8))
    assert other != runs[0]


def test_epochs_advance_and_set_epoch(dataset):
    _, ds = dataset
    ld = softpipe.Loader(str(ds), batch_size=8, size=16, seed=5)
    e0 = epoch_digests(ld)
    e1 = epoch_digests(ld)  # the next iter() runs the next epoch
    assert e0 != e1 and ld.state_dict()["epoch"] == 1
    ld.set_epoch(0)
    assert epoch_digests(ld) == e0


def test_resume_in_a_new_process(dataset, tmp_path):
    _, ds = dataset
    ld = softpipe.Loader(str(ds), batch_size=8, size=16, seed=11)
    ld.set_epoch(2)
    full = [labels.tolist() + [float(images.sum())] for images, labels in ld]
    ld = softpipe.Loader(str(ds), batch_size=8, size=16, seed=11)
    ld.set_epoch(2)
    it = iter(ld)
    for _ in range(3):
        next(it)
    state = ld.state_dict()
    assert state == {"seed": 11, "epoch": 2, "batches": 3, "rank": 0, "world_size": 1}
    code = f"""
import json, sys, softpipe
ld = softpipe.Loader({str(ds)!r}, batch_size=8, size=16, seed=11)
ld.load_state_dict(json.loads(sys.argv[1]))
print(json.dumps([labels.tolist() + [float(images.sum())] for images, labels in ld]))
"""
    out = subprocess.run([sys.executable, "-c", code, json.dumps(state)], capture_output=True, text=True,
                         env=dict(os.environ), check=True).stdout
    assert json.loads(out) == full[3:]
    with pytest.raises(ValueError, match="seed"):
        softpipe.Loader(str(ds), batch_size=8, size=16, seed=12).load_state_dict(state)


def test_held_batches_never_change(dataset):
    _, ds = dataset
    ld = softpipe.Loader(str(ds), batch_size=4, size=16, threads=2, prefetch=2, seed=2)
    held, copies = [], []
    for i, (images, labels) in enumerate(ld):
        if i < 10:
            held.append((images, labels))
            copies.append((images.clone(), labels.clone()))
    for (a, la), (b, lb) in zip(held, copies):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_distributed_slices(dataset):
    _, ds = dataset
    n = 60
    for w in (1, 2, 3, 4):
        seen = []
        for r in range(w):
            ld = softpipe.Loader(str(ds), batch_size=7, size=8, seed=4, rank=r, world_size=w)
            for raw in ld.batches():
                seen += np.asarray(raw[2]).tolist()
        assert sorted(set(seen)) == list(range(n))
        assert len(seen) == -(-n // w) * w  # padded like DistributedSampler


def test_filter(dataset):
    _, ds = dataset
    ld = softpipe.Loader(str(ds), batch_size=8, size=8, filter="label in {0, 2}")
    labels = torch.cat([lab for _, lab in ld]).tolist()
    assert len(labels) == 40 and set(labels) == {0, 2}
    st = ld.stats()
    assert st["n_samples"] == 40 and st["samples"] == 40
    # batch memory is page-locked only where a CUDA runtime is present
    assert st["pinned_bytes"] == 0 or torch.cuda.is_available()
    with pytest.raises(ValueError, match="lable"):
        softpipe.Loader(str(ds), filter="lable == 1")


def test_bad_sample_skip_and_fail(tmp_path):
    src = tmp_path / "src" / "c"
    src.mkdir(parents=True)
    for i in range(10):
        buf = io.BytesIO()
        smooth_image(64, 48, 100 + i).save(buf, "JPEG", quality=90)
        data = bytearray(buf.getvalue())
        if i == 3:  # corrupt the entropy-coded data, keep header and end marker
            mid = len(data) // 2
            data[mid:mid + 50] = b"\xff" * 50
        (src / f"{i}.jpg").write_bytes(bytes(data))
    ds = tmp_path / "ds"
    softpipe.pack(str(tmp_path / "src"), str(ds))
    ld = softpipe.Loader(str(ds), batch_size=5, size=16)
    assert sum(len(lab) for _, lab in ld) == 10
    st = ld.stats()
    assert st["samples_skipped_bad"] == 1 and "c/3.jpg" in st["skipped"][0]
    with pytest.raises(softpipe.DataError, match=r"record 3 \(\"c/3.jpg\"\)"):
        for _ in softpipe.Loader(str(ds), batch_size=5, size=16, on_error="fail"):
            pass


def torchvision_center(path, size):
    tf = T.Compose([T.Resize(int(size / 0.875)), T.CenterCrop(size), T.PILToTensor()])
    return tf(Image.open(path).convert("RGB")).numpy().astype(np.float32)


@pytest.mark.parametrize("dct_scale,bound", [(False, 1.5), (True, 3.0)])
def test_resize_quality_against_torchvision(dataset, dct_scale, bound):
    """Center crop (deterministic box): mean absolute difference to torchvision's Resize +
    CenterCrop on PIL, in 0..255 units."""
    src, ds = dataset
    ld = softpipe.Loader(str(ds), batch_size=20, size=64, crop="center", flip=0.0, dtype="uint8",
                         shuffle="none", dct_scale=dct_scale, seed=0)
    d = softpipe.Dataset(str(ds))
    diffs = []
    for raw in ld.batches():
        images, ids = np.asarray(raw[0]), np.asarray(raw[2])
        for k, i in enumerate(ids.tolist()):
            key = d.key(i)
            ref = torchvision_center(os.path.join(src, key), 64)
            diffs.append(np.abs(images[k].astype(np.float32) - ref).mean())
    assert np.mean(diffs) <= bound, f"mean abs diff {np.mean(diffs):.3f} > {bound}"


def test_resnet18_example_runs(dataset):
    _, ds = dataset
    root = os.environ.get("SOFTPIPE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
    p = subprocess.run([sys.executable, os.path.join(root, "examples", "train_resnet18.py"), str(ds),
                        "--steps", "2", "--batch-size", "8", "--size", "64", "--threads", "2"],
                       capture_output=True, text=True, env=dict(os.environ))
    assert p.returncode == 0, p.stderr
    assert "step   2  loss" in p.stdout and "stall share" in p.stdout


def test_numpy_arrays_without_torch(dataset, monkeypatch):
    """Without torch the loader yields NumPy arrays viewing the same batch memory."""
    _, ds = dataset
    monkeypatch.setattr(softpipe, "_torch_from_dlpack", False)
    images, labels = next(iter(softpipe.Loader(str(ds), batch_size=4, size=16, seed=9)))
    assert isinstance(images, np.ndarray) and images.shape == (4, 3, 16, 16)
    assert images.dtype == np.float32 and labels.dtype == np.int64
    assert not images.flags["OWNDATA"] and images.base is not None  # a view, no copy
