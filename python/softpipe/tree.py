"""softpipe.TreeModel: XGBoost models compiled into a flat layout, predicted without per-call
parsing or allocation.

    >>> import softpipe
    >>> model = softpipe.TreeModel("model.json")     # XGBoost JSON (Booster.save_model)
    >>> p = model.predict(X)                          # float32 NumPy array, like inplace_predict
    >>> m = model.predict(X, margin=True, threads=2)
    >>> model.num_features, model.num_classes, model.objective
"""

from ._softpipe import _TreeModel

__all__ = ["TreeModel"]


class TreeModel(_TreeModel):
    """A tree ensemble loaded from an XGBoost JSON model: ``TreeModel(path)``.

    Raises softpipe.DataError (a ValueError) for a malformed model, naming the JSON path at
    fault, and for an unsupported objective or booster, naming it.
    """

    __slots__ = ()

    def predict(self, X, margin=False, threads=None):
        """Predictions for the rows of X (n x num_features, NaN = missing).

        X: a NumPy array or CPU torch tensor. A float32 array whose rows are contiguous is read
        in place; anything else is converted to float32 once. A single row may be 1-D.
        margin: the raw margins instead of the objective's output.
        threads: None = all cores for large batches, 1 = this thread only.
        Returns float32 values of shape (n,) or (n, num_classes) for multiclass
        probabilities and margins (multi:softmax returns class indices as float32).
        """
        import numpy as np

        if type(X).__module__.startswith("torch"):
            if X.device.type != "cpu":
                raise ValueError(f"X is on {X.device}; move it to the CPU first")
            X = X.detach().numpy()
        X = np.asarray(X)
        one = X.ndim == 1
        if one:
            X = X.reshape(1, -1)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (rows x features), got {X.ndim} dimensions")
        if (X.dtype != np.float32 or X.strides[1] != 4 or X.strides[0] % 4
                or (X.shape[0] > 1 and X.strides[0] < 4 * X.shape[1])):
            X = np.ascontiguousarray(X, dtype=np.float32)
        k = self._num_outputs(bool(margin))
        out = np.empty((X.shape[0], k) if k > 1 else (X.shape[0],), dtype=np.float32)
        self._predict(X, out, bool(margin), 0 if threads is None else int(threads))
        return out[0] if one else out
