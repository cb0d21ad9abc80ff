"""softpipe: pack images and tables into checksummed, indexed shards and read them back fast.

    >>> import softpipe
    >>> report = softpipe.pack("photos/", "photos.sp")      # ImageFolder tree -> dataset folder
    >>> with softpipe.Dataset("photos.sp") as ds:
    ...     payload, cols = ds[0]      # read-only memoryview into the mapping, dict of columns
    ...     labels = ds.column("label")  # NumPy int64 array
    >>> softpipe.verify("photos.sp")["ok"]
    True

Errors are raised from the library's status codes: DataError (a ValueError) for malformed input
or a corrupt dataset, ValueError for a bad argument, FileNotFoundError, FileExistsError, OSError
and MemoryError. The message is the library's, naming the file and record at fault; the
exception's ``status`` attribute holds the status name (e.g. ``"SP_EBADINPUT"``).
"""

import json as _json

from ._softpipe import DataError, Payload, __version__, version
from ._softpipe import _Dataset
from ._softpipe import pack
from ._softpipe import verify as _verify

__all__ = ["Dataset", "DataError", "Payload", "pack", "verify", "version", "__version__"]


class Dataset(_Dataset):
    """A softpipe dataset folder opened read-only: ``Dataset(path)``.

    ``path`` is the dataset folder (or its manifest.json), as str or os.PathLike. Opening maps
    every shard and validates its footer, metadata and index; payload bytes are not read.

    - ``len(ds)``: number of samples.
    - ``ds[i]`` -> ``(payload, columns)``: ``payload`` is a read-only ``memoryview`` pointing
      straight into the mapping (no copy; it keeps the dataset mapped while it lives) and
      ``columns`` a dict ``{name: value}`` with None for nulls. Negative indices count from the
      end; out of range raises IndexError.
    - ``ds.sample(i)``: the payload memoryview only (fastest); ``ds.key(i)``: the key string;
      ``ds.row(i)``: the column dict only.
    - ``ds.columns``: list of ``(name, type_name)``; ``ds.column(name)``: a whole column as a
      NumPy array (or a list of str); ``ds.nulls(name)``: its null flags.
    - ``ds.payload_bytes``, ``ds.num_shards``, ``ds.manifest`` (dict), ``ds.path``.
    - ``ds.close()`` or ``with Dataset(path) as ds:``. After close every access raises
      ValueError("dataset is closed"); payload views still alive stay valid until released.

    Pickling reopens the dataset from its path (so it can go to DataLoader worker processes).
    """

    __slots__ = ()

    def column(self, name):
        """The whole column ``name``.

        int32, int64 and float64 columns come back as a writable 1-D NumPy array of that dtype,
        with nulls as 0 (NaN for float64): see :meth:`nulls`. String columns come back as a
        list of str (None for nulls). Raises KeyError for an unknown column.
        """
        raw = self._column(name)
        if isinstance(raw, list):
            return raw
        import numpy as np

        values, dtype, _nulls = raw
        return np.frombuffer(values, dtype=np.dtype(dtype))

    def nulls(self, name):
        """A bool NumPy array: True where column ``name`` is null."""
        import numpy as np

        raw = self._column(name)
        if isinstance(raw, list):
            return np.fromiter((v is None for v in raw), dtype=np.bool_, count=len(raw))
        return np.frombuffer(raw[2], dtype=np.uint8).astype(np.bool_)

    @property
    def manifest(self):
        """manifest.json parsed into a dict (a fresh copy on each access)."""
        return _json.loads(self.manifest_text)

    @property
    def classes(self):
        """Class names in label order (ImageFolder, or a table's string labels), else []."""
        return list(self.manifest.get("pack", {}).get("classes", []))


def verify(path, *, deep=False, threads=0):
    """Checks the dataset folder at ``path`` and returns a report dict.

    Checks the manifest, every shard's sha256, footer, metadata hash and index, and every
    payload's CRC-32C; with ``deep=True`` also decodes every JPEG/PNG payload. ``threads``:
    shards checked in parallel, 0 = all cores. The GIL is released while checking.

    The report: ``ok`` (bool), ``shards``, ``shards_bad``, ``samples``, ``samples_bad``,
    ``bytes`` and ``issues``, a list of dicts with ``shard`` (file name), ``sample`` (index
    within that shard, None when the issue concerns the whole shard), ``index`` (the global
    sample index, when the manifest can tell it, else None), ``key`` (None when unknown) and
    ``message``.

    Corruption is reported as ``ok=False``, never raised. Raises only when the dataset cannot
    be checked at all: FileNotFoundError (no such folder or no manifest.json), OSError,
    MemoryError, ValueError (bad argument).
    """
    report = _verify(path, deep=deep, threads=threads)
    first = {}
    try:
        import os

        with open(os.path.join(os.fspath(path), "manifest.json"), "rb") as f:
            start = 0
            for sh in _json.load(f)["shards"]:
                first[sh["file"]] = start
                start += int(sh["samples"])
    except Exception:  # an unreadable manifest is already an issue in the report
        first = {}
    for issue in report["issues"]:
        base = first.get(issue["shard"])
        issue["index"] = (base + issue["sample"]
                          if base is not None and issue["sample"] is not None else None)
    return report


# ---------------------------------------------------------------------------------------- loader

from ._softpipe import BatchArray, _Loader  # noqa: E402

_torch_from_dlpack = None  # resolved on the first batch: importing torch costs ~2 s


def _as_tensor(arr):
    global _torch_from_dlpack
    if _torch_from_dlpack is None:
        try:  # torch is optional: without it the loader yields NumPy arrays
            from torch.utils.dlpack import from_dlpack as _torch_from_dlpack
        except ImportError:  # pragma: no cover - depends on the machine
            _torch_from_dlpack = False
    if _torch_from_dlpack:
        return _torch_from_dlpack(arr)
    import numpy as _np
    return _np.asarray(arr)


class Loader(_Loader):
    """Batches of augmented images straight from a softpipe dataset, decoded by native threads.

    ``Loader(path, batch_size=256, size=224, **options)``; iterate it to get ``(images, labels)``
    for one epoch: ``images`` is a ``(n, 3, h, w)`` tensor (``NCHW``; ``(n, h, w, 3)`` for
    ``layout="NHWC"``) and ``labels`` an int64 tensor of ``n`` — torch tensors viewing the batch
    memory through DLPack without a copy (NumPy arrays when torch is absent). A batch stays
    valid, unchanged, for as long as any tensor viewing it lives.

    Options (same names as the C ``sp_loader_opts``): ``crop`` = "random_resized" | "center" |
    "none"; ``scale`` (0.08, 1); ``ratio`` (3/4, 4/3); ``flip`` probability (0.5);
    ``normalize`` with ``mean``/``std`` (ImageNet's); ``dtype`` = "float32" | "float16" |
    "uint8"; ``layout`` = "NCHW" | "NHWC"; ``seed``; ``shuffle`` = "global" | "block" | "none";
    ``drop_last``; ``rank`` / ``world_size`` (DistributedSampler's slicing); ``threads``;
    ``prefetch``; ``filter`` (e.g. ``"label in {1, 3} and timestamp >= 1700000000"``);
    ``on_error`` = "skip" | "fail"; ``decode`` = "accurate" | "fast"; ``crop_decode`` and
    ``dct_scale`` (the optimizations, on by default); ``mem_budget`` in bytes.

    Each ``iter(loader)`` runs one epoch; after a finished epoch the next ``iter`` starts the
    following epoch, unless ``set_epoch(e)`` chose one. An ``iter`` begun mid-epoch (after a
    ``break``, or after ``load_state_dict``) continues from the next batch of that epoch. ``state_dict()`` / ``load_state_dict()``
    resume exactly where a run stopped, in O(1). ``stats()`` reports per-stage time, the
    consumer's wait (stall share), bytes read, blocks skipped by the filter and bad samples.
    """

    __slots__ = ()

    def __len__(self):
        return self._len()

    def __iter__(self):
        st = self.state_dict()
        if st["batches"] >= self._len() and self._len() > 0:
            self.set_epoch(st["epoch"] + 1)
        while True:
            b = self._next()
            if b is None:
                return
            images, labels, _ids = b
            yield _as_tensor(images), _as_tensor(labels)

    def batches(self):
        """Like iteration, but yields ``(images, labels, ids)`` as raw BatchArray views
        (buffer protocol + DLPack): ``ids`` are the dataset indices of the samples."""
        while True:
            b = self._next()
            if b is None:
                return
            yield b

    def stats(self):
        """Telemetry: seconds per stage (read, decode, augment, summed over threads), the
        consumer's wait and its share of wall time, samples, batches, bytes read, blocks skipped
        by the filter, bad samples skipped (and the last ones' descriptions), memory in use."""
        return self._stats()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ += ["Loader", "BatchArray"]


from .tree import TreeModel  # noqa: E402
from .transform import Transform  # noqa: E402

__all__ += ["TreeModel", "Transform"]


def __getattr__(name):
    # softpipe.metrics is imported on first use, so `import softpipe` does not load NumPy.
    if name in ("metrics", "cache"):
        import importlib

        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'softpipe' has no attribute {name!r}")
