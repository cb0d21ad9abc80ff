"""softpipe.cache: preprocessing once, from Python, without a pipeline file.

    >>> from softpipe.cache import cached
    >>> @cached(files=["data/raw.csv"])            # or files=lambda path, **kw: [path]
    ... def featurize(path, window=7):
    ...     ...                                    # hours of work
    ...     return table
    >>> featurize("data/raw.csv", window=7)        # computes and stores
    >>> featurize("data/raw.csv", window=7)        # restores (a file read), until something changes

The key of a call is the sha256 of: the function's module, name and source code, its arguments
(pickled; keyword arguments sorted by name), and the content digests of the files it reads (the
same digests `softpipe run` uses: sha256 for files, a Merkle hash for folders, computed in C).
Results are pickled into a content-addressed folder (default ``.softpipe/pycache`` under the
current folder, or ``store=``), written atomically (temp file, fsync, rename), so a crash never
leaves half a result. ``featurize.cache_key(...)`` returns the key a call would use, and
``featurize.uncached(...)`` calls the function itself.
"""

import functools
import hashlib
import inspect
import os
import pickle

from . import _softpipe

__all__ = ["cached", "digest"]


def digest(path):
    """The content digest of a file ("sha256:<hex>") or folder ("tree-sha256:<hex>")."""
    return _softpipe._path_digest(os.fspath(path))


def _source(fn):
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):  # built in, or defined where the source is not available
        return getattr(fn, "__qualname__", repr(fn))


def cached(files=(), store=None):
    """Decorator: caches the function's result, keyed on its code, arguments and input files.

    files: paths (str / os.PathLike) the function reads, or a callable given the call's
        arguments that returns them. Their content, not their timestamps, is part of the key.
    store: the folder holding the results (default: .softpipe/pycache in the current folder).
    Arguments must be picklable; results must be picklable.
    """

    def decorate(fn):
        src = _source(fn)

        def key_of(args, kwargs):
            h = hashlib.sha256()
            h.update(b"softpipe-pycache 1\n")
            for part in (fn.__module__ or "", fn.__qualname__, src):
                b = part.encode("utf-8", "surrogateescape")
                h.update(b"%d:" % len(b) + b + b"\n")
            arg_bytes = pickle.dumps((args, sorted(kwargs.items())), protocol=4)
            h.update(b"args %d:" % len(arg_bytes) + arg_bytes + b"\n")
            paths = files(*args, **kwargs) if callable(files) else files
            for p in sorted(os.fspath(p) for p in paths):
                d = digest(p)
                h.update(("file %d:%s %s\n" % (len(p), p, d)).encode("utf-8", "surrogateescape"))
            return h.hexdigest()

        def location(key):
            base = store if store is not None else os.path.join(".softpipe", "pycache")
            return os.path.join(base, key[:2], key[2:] + ".pkl")

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            key = key_of(args, kwargs)
            path = location(key)
            try:
                with open(path, "rb") as f:
                    return pickle.load(f)
            except FileNotFoundError:
                pass
            result = fn(*args, **kwargs)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = "%s.tmp-%d" % (path, os.getpid())
            with open(tmp, "wb") as f:
                pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            return result

        wrapper.cache_key = lambda *a, **kw: key_of(a, kw)
        wrapper.uncached = fn
        return wrapper

    return decorate
