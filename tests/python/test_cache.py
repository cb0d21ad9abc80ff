"""softpipe.cache.cached: results keyed on code, arguments and file contents."""
import os

import pytest

from softpipe.cache import cached, digest


def test_cached_restores_until_something_changes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "raw.txt"
    data.write_text("abc")
    calls = []

    @cached(files=lambda path, **kw: [path])
    def featurize(path, window=3):
        calls.append((path, window))
        return open(path).read() * window

    assert featurize(str(data), window=2) == "abcabc"
    assert featurize(str(data), window=2) == "abcabc"
    assert len(calls) == 1                       # restored
    assert featurize(str(data), window=3) == "abcabcabc"
    assert len(calls) == 2                       # another argument
    k1 = featurize.cache_key(str(data), window=2)
    data.write_text("xyz")                       # same size, new content
    assert featurize.cache_key(str(data), window=2) != k1
    assert featurize(str(data), window=2) == "xyzxyz"
    assert len(calls) == 3
    assert (tmp_path / ".softpipe" / "pycache").is_dir()
    # no temp files left behind
    leftovers = [f for _, _, fs in os.walk(tmp_path / ".softpipe") for f in fs if ".tmp-" in f]
    assert leftovers == []


def test_digest_matches_sha256_and_folders(tmp_path):
    import hashlib
    f = tmp_path / "a.bin"
    f.write_bytes(b"hello")
    assert digest(f) == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "x").write_text("1")
    t1 = digest(d)
    assert t1.startswith("tree-sha256:")
    (d / "sub" / "x").write_text("2")
    assert digest(d) != t1
    with pytest.raises(FileNotFoundError):
        digest(tmp_path / "missing")
