"""Fixtures for the end-to-end CLI tests: the softpipe binary and small generated image trees."""
import io
import os
import subprocess
import json

import pytest
from PIL import Image

ROOT = os.environ.get("SOFTPIPE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("SOFTPIPE_BIN", os.path.join(ROOT, "build", "softpipe"))


def jpeg_bytes(w, h, seed=0, mode="RGB", quality=85):
    import numpy as np
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    arr = rng.integers(0, 255, size=shape, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(w, h, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, "PNG")
    return buf.getvalue()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def run(*args, check=None):
    """Runs softpipe; returns CompletedProcess (text). check=N asserts the exit code."""
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode} != {check}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def run_json(*args, check=0):
    p = run(*args, "--json", check=check)
    return json.loads(p.stdout)


@pytest.fixture
def tree(tmp_path):
    """An ImageFolder tree: 3 classes, JPEG/PNG, upper-case extension, nested folder, grey image,
    and a hidden file and a non-image file that must be ignored."""
    src = tmp_path / "src"
    files = {}
    for c, cls in enumerate(["cat", "dog", "zebra"]):
        for i in range(4):
            rel = f"{cls}/img{i}.jpg"
            files[rel] = jpeg_bytes(40 + i, 30 + c, seed=c * 10 + i)
    files["dog/sub/deep.JPEG"] = jpeg_bytes(64, 48, seed=99)
    files["dog/grey.jpeg"] = jpeg_bytes(33, 17, seed=98, mode="L")
    files["zebra/pic.png"] = png_bytes(21, 13, seed=97)
    for rel, data in files.items():
        write(str(src / rel), data)
    write(str(src / "cat" / ".hidden.jpg"), b"not an image")
    write(str(src / "cat" / "notes.txt"), b"ignored")
    return src, files
