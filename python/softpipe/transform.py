"""softpipe.transform: feature transforms, one definition for training and serving.

    >>> from softpipe.transform import Transform, fit
    >>> spec = {"columns": [
    ...     {"name": "age", "steps": [{"fill": "mean"}, {"clip": [0, 120]}, {"standardize": {}}]},
    ...     {"name": "city", "steps": [{"vocabulary": {"max_size": 1000}}, {"one_hot": {}}]},
    ...     {"name": "income", "steps": [{"log1p": {}}, {"bucketize": {"quantiles": 10}}]}]}
    >>> tf = fit(spec, {"age": ages, "city": cities, "income": incomes}, out_path="fitted.json")
    >>> tf.features                      # ["age", "city=paris", ..., "city:oov", "income"]
    >>> X = tf.apply({"age": ages, "city": cities, "income": incomes})   # float32 (n, len(features))
    >>> X = Transform("fitted.json").apply(df)   # a dict of columns, or a pandas DataFrame

The statistics and the apply step run in the C library (softpipe/transform.h), the same code as
``softpipe transform apply``, ``softpipe predict`` and the server, so features computed here are
byte-identical to theirs. The spec format is documented in docs/transform.md.

Columns: numbers as any numeric NumPy array or list (NaN is missing; integers are read exactly),
text as a list or array of str (None or NaN is missing). Columns are looked up by name; extra
columns are ignored. Errors are raised as in the rest of softpipe: softpipe.DataError (a
ValueError) for bad data or a bad spec, with the library's message naming the column and row.
"""

import json as _json
import os as _os

from ._softpipe import _Transform

__all__ = ["Transform", "fit"]


def _column(values):
    """A column as the C layer takes it: a contiguous float64/int64 array, or a tuple of str."""
    import numpy as np

    mod = type(values).__module__ or ""
    if mod.startswith("torch"):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        else:
            raise ValueError(f"a column must be 1-D, got shape {arr.shape}")
    kind = arr.dtype.kind
    if kind == "f":
        return np.ascontiguousarray(arr, dtype=np.float64)
    if kind in "iub":
        if kind == "u" and arr.dtype.itemsize == 8 and arr.size and arr.max() > np.iinfo(np.int64).max:
            return np.ascontiguousarray(arr, dtype=np.float64)
        return np.ascontiguousarray(arr, dtype=np.int64)
    if kind in "USO":
        return arr.tolist()
    raise TypeError(f"unsupported column dtype {arr.dtype} (use numbers or str)")


def _columns(tf, data):
    """(names, values, n_rows) for the inputs of tf found in data (a mapping or a DataFrame)."""
    names, values, n_rows = [], [], None
    for name, _is_text in tf.inputs:
        try:
            col = data[name]
        except (KeyError, IndexError):
            continue  # the library reports the missing column, naming what it needs
        v = _column(col)
        n = len(v)
        if n_rows is None:
            n_rows = n
        elif n != n_rows:
            raise ValueError(f"column {name!r} has {n} rows, the others have {n_rows}")
        names.append(name)
        values.append(v)
    if n_rows is None:
        needed = ", ".join(n for n, _ in tf.inputs)
        raise ValueError(f"the data has none of the transform's input columns ({needed})")
    return names, values, n_rows


class Transform(_Transform):
    """A feature transform: ``Transform(path)`` loads a spec or a fitted transform (JSON file);
    ``Transform(json=text)`` loads it from text.

    - ``tf.apply(data, threads=0)`` -> float32 NumPy array ``(n_rows, n_features)``; needs a
      fitted transform.
    - ``tf.features``: output feature names, in column order; ``tf.n_features``.
    - ``tf.inputs``: ``[(column name, is_text), ...]`` the columns it reads.
    - ``tf.fitted``, ``tf.fit_rows``; ``tf.to_json()``, ``tf.to_dict()``, ``tf.save(path)``.
    - ``Transform.fit(spec, data, out_path=None)``: fit a spec (path, dict or JSON text) to data.

    A Transform is read-only once fitted: ``apply`` may run from several threads at once (the
    GIL is released while it runs).
    """

    __slots__ = ()

    @classmethod
    def fit(cls, spec, data, out_path=None, *, threads=0):
        """Fits ``spec`` (a path, a dict, JSON text, or a Transform) to ``data`` (a mapping of
        column name to array/list, or a DataFrame) and returns the fitted Transform; writes it
        to ``out_path`` too when given."""
        tf = _load(cls, spec)
        names, values, n_rows = _columns(tf, data)
        tf._fit(names, values, n_rows, threads)
        if out_path is not None:
            tf.save(out_path)
        return tf

    def apply(self, data, *, threads=0):
        """The features of ``data`` as a float32 array ``(n_rows, n_features)``: NaN where a
        value is missing and no fill step replaced it."""
        import numpy as np

        names, values, n_rows = _columns(self, data)
        out = np.empty((n_rows, self.n_features), dtype=np.float32)
        self._apply(names, values, n_rows, out, threads)
        return out

    def to_dict(self):
        """The transform as a dict (the parsed JSON)."""
        return _json.loads(self.to_json())

    def __repr__(self):
        state = f"fitted on {self.fit_rows} rows" if self.fitted else "not fitted"
        return f"<softpipe.transform.Transform: {len(self.inputs)} inputs -> {self.n_features} features, {state}>"


def _load(cls, spec):
    if isinstance(spec, _Transform):
        return cls(json=spec.to_json())
    if isinstance(spec, dict):
        return cls(json=_json.dumps(spec))
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        return cls(json=spec)
    if isinstance(spec, (str, bytes, _os.PathLike)):
        return cls(spec)
    raise TypeError(f"spec must be a path, a dict or JSON text, not {type(spec).__name__}")


def fit(spec, data, out_path=None, *, threads=0):
    """Fits ``spec`` (a path, dict or JSON text) to ``data`` and returns the fitted
    :class:`Transform`; also writes it to ``out_path`` when given. See :meth:`Transform.fit`."""
    return Transform.fit(spec, data, out_path, threads=threads)
