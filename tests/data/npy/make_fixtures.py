#!/usr/bin/python3
"""Writes the NumPy-made .npy fixtures that tests/test_ingest_npy.c reads (and fuzz/corpus/npy/
seeds from). Run from anywhere: /usr/bin/python3 tests/data/npy/make_fixtures.py
The values are fixed formulas that the C test recomputes; keep the two in step."""
import os

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))


def save(name, a, version=None):
    path = os.path.join(here, name)
    if version is None:
        np.save(path, a)
    else:
        with open(path, "wb") as f:
            np.lib.format.write_array(f, a, version=version)


save("f64_1d.npy", np.arange(10, dtype="<f8") * 0.5 - 1.0)           # -1.0, -0.5, ..., 3.5
save("f32_2d.npy", (np.arange(12, dtype="<f4") / 4).reshape(3, 4))   # [i][j] = (4i + j) / 4
save("i64_1d.npy", np.array([-(2**62), -1, 0, 1, 2**62 + 7], dtype="<i8"))
save("bool_1d.npy", np.array([True, False, False, True, True]))
save("u8_2d.npy", np.arange(6, dtype="u1").reshape(2, 3) * 40)      # [i][j] = 40 (3i + j)
save("f64_fortran.npy", np.asfortranarray(np.arange(6, dtype="<f8").reshape(2, 3)))  # [i][j] = 3i + j
save("i32_v2.npy", np.arange(-3, 4, dtype="<i4"), version=(2, 0))    # -3 .. 3, format 2.0
save("u16_v3.npy", np.array([0, 1, 65535], dtype="<u2"), version=(3, 0))  # format 3.0
save("f64_scalar.npy", np.array(2.25))                               # 0-d
save("i16_empty.npy", np.zeros((0, 3), dtype="<i2"))                  # shape (0, 3)
