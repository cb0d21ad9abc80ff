"""End-to-end tests of the softpipe command-line tool: pack, inspect, verify."""
import filecmp
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import BIN, jpeg_bytes, png_bytes, run, run_json, write


def test_help_and_usage_errors():
    p = run("--help", check=0)
    for cmd in ("pack", "inspect", "verify"):
        assert cmd in p.stdout
        assert "usage: softpipe " + cmd in run(cmd, "--help", check=0).stdout
    assert "unknown command" in run("frobnicate", check=2).stderr
    run(check=2)
    assert "missing" in run("pack", check=2).stderr
    assert "unknown option" in run("pack", "x", "-o", "y", "--bogus", check=2).stderr
    assert "--on-error" in run("pack", "x", "-o", "y", "--on-error", "maybe", check=2).stderr
    assert "--shard-size" in run("pack", "x", "-o", "y", "--shard-size", "lots", check=2).stderr
    assert "softpipe " in run("--version", check=0).stdout


def test_pack_inspect_verify(tree, tmp_path):
    src, files = tree
    out = tmp_path / "ds"
    rep = run_json("pack", src, "-o", out)
    assert rep["ok"] and rep["format"] == "imagefolder"
    assert rep["samples"] == len(files) and rep["classes"] == 3 and rep["skipped"] == []
    assert rep["payload_bytes"] == sum(len(b) for b in files.values())
    assert (out / "manifest.json").exists() and (out / "shard-00000.sps").exists()

    info = run_json("inspect", out)
    assert info["samples"] == len(files)
    cols = {c["name"]: c for c in info["columns"]}
    assert cols["label"]["type"] == "int64" and (cols["label"]["min"], cols["label"]["max"]) == (0, 2)
    assert cols["width"]["min"] == 21 and cols["width"]["max"] == 64
    hist = {h["name"]: h["count"] for h in info["labels"]}
    assert hist == {"cat": 4, "dog": 6, "zebra": 5}
    assert info["pack"]["classes"] == ["cat", "dog", "zebra"]
    text = run("inspect", out, check=0).stdout
    assert "zebra" in text and "samples   15" in text

    v = run_json("verify", out)
    assert v["ok"] and v["issues"] == [] and v["samples"] == len(files)
    assert run("verify", out, "--deep", check=0).stdout.rstrip().endswith("OK")

    # the output exists now: refused, not overwritten
    p = run("pack", src, "-o", out, check=2)
    assert "already exists" in p.stderr


def test_output_identical_for_any_thread_count(tree, tmp_path):
    src, _ = tree
    outs = []
    for t in (1, 2, 7):
        out = tmp_path / f"ds{t}"
        run("pack", src, "-o", out, "--threads", t, "--shard-size", "16k", "--block-size", "4k", check=0)
        outs.append(out)
    names = sorted(os.listdir(outs[0]))
    assert len([n for n in names if n.endswith(".sps")]) > 1
    for o in outs[1:]:
        assert sorted(os.listdir(o)) == names
        match, mismatch, errors = filecmp.cmpfiles(outs[0], o, names, shallow=False)
        assert mismatch == [] and errors == []


def bad_tree(tmp_path):
    src = tmp_path / "bad"
    write(str(src / "a" / "good.jpg"), jpeg_bytes(20, 20))
    write(str(src / "a" / "empty.jpg"), b"")
    write(str(src / "b" / "trunc.jpg"), jpeg_bytes(50, 50)[:300])
    write(str(src / "b" / "text.jpg"), b"hello, I am not a JPEG\n")
    os.symlink("/nonexistent/file.jpg", src / "b" / "gone.jpg")
    write(str(src / "b" / "ok.png"), png_bytes(5, 5))
    return src


def test_bad_inputs_fail(tmp_path):
    src = bad_tree(tmp_path)
    out = tmp_path / "ds"
    p = run("pack", src, "-o", out, check=1)
    assert "a/empty.jpg" in p.stderr and "empty" in p.stderr
    assert not out.exists()
    # nothing half-written is left beside it either
    assert [n for n in os.listdir(tmp_path) if n != "bad"] == []


def test_bad_inputs_skip(tmp_path):
    src = bad_tree(tmp_path)
    out = tmp_path / "ds"
    rep = run_json("pack", src, "-o", out, "--on-error", "skip")
    assert rep["samples"] == 2
    reasons = {s["where"]: s["reason"] for s in rep["skipped"]}
    assert set(reasons) == {"a/empty.jpg", "b/trunc.jpg", "b/text.jpg", "b/gone.jpg"}
    assert "empty" in reasons["a/empty.jpg"]
    assert "truncated" in reasons["b/trunc.jpg"]
    assert "not a JPEG" in reasons["b/text.jpg"]
    assert "No such file" in reasons["b/gone.jpg"]
    p = run("pack", src, "-o", tmp_path / "ds2", "--on-error", "skip", check=0)
    assert "skipped b/trunc.jpg: truncated JPEG" in p.stderr
    assert "4 skipped" in p.stdout
    run("verify", out, check=0)


def test_missing_source_and_not_a_dataset(tmp_path):
    assert "nope" in run("pack", tmp_path / "nope", "-o", tmp_path / "o", check=2).stderr
    (tmp_path / "empty").mkdir()
    assert "no class folders" in run("pack", tmp_path / "empty", "-o", tmp_path / "o", check=1).stderr
    assert "manifest.json" in run("inspect", tmp_path / "empty", check=2).stderr
    assert "manifest.json" in run("verify", tmp_path / "empty", check=2).stderr


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def test_verify_names_corrupt_samples_and_shards(tree, tmp_path):
    src, _ = tree
    out = tmp_path / "ds"
    run("pack", src, "-o", out, "--shard-size", "16k", "--block-size", "4k", check=0)
    shards = sorted(n for n in os.listdir(out) if n.endswith(".sps"))
    assert len(shards) >= 2
    flip(out / shards[0], 4096 + 700)  # inside the first sample's payload
    size = os.path.getsize(out / shards[1])
    flip(out / shards[1], size - 60)  # inside the footer
    p = run("verify", out, check=1)
    assert f"CORRUPT {shards[0]}: record 0 (\"cat/img0.jpg\"" in p.stdout
    assert "CRC32C mismatch" in p.stdout
    assert f"{shards[1]}: footer" in p.stdout
    assert "2 bad shards" in p.stdout
    v = run_json("verify", out, check=1)
    assert not v["ok"] and v["shards_bad"] == 2
    first = v["issues"][0]
    assert first["shard"] == shards[0] and first["sample"] == 0 and first["key"] == "cat/img0.jpg"
    # a manifest that lies about a shard's hash
    m = json.loads((out / "manifest.json").read_text())
    assert all(len(s["sha256"]) == 64 for s in m["shards"])
    # inspect refuses the corrupt footer, naming the shard
    assert shards[1] in run("inspect", out, check=1).stderr


def test_csv_pack(tmp_path):
    imgs = tmp_path / "t"
    write(str(imgs / "im" / "a.jpg"), jpeg_bytes(30, 20, seed=1))
    write(str(imgs / "im" / "b.jpg"), jpeg_bytes(31, 21, seed=2))
    (imgs / "table.csv").write_text(
        "id,label,score,when,file\n"
        "x1,cat,0.5,2024-05-01T12:00:00Z,im/a.jpg\n"
        "x2,dog,1.5,2024-05-02,im/b.jpg\n"
        "x3,cat,,1714608000,\n")
    out = tmp_path / "ds"
    rep = run_json("pack", imgs / "table.csv", "-o", out, "--image-column", "file",
                   "--time-column", "when", "--key-column", "id")
    assert rep["format"] == "csv" and rep["samples"] == 3 and rep["classes"] == 2
    info = run_json("inspect", out)
    cols = {c["name"]: c for c in info["columns"]}
    assert cols["timestamp"]["type"] == "int64"
    assert cols["timestamp"]["min"] == 1714564800 and cols["timestamp"]["max"] == 1714608000
    assert cols["score"]["type"] == "float64" and cols["score"]["nulls"] == 1
    assert cols["width"]["nulls"] == 1 and cols["width"]["max"] == 31
    assert {h["name"]: h["count"] for h in info["labels"]} == {"cat": 2, "dog": 1}
    run("verify", out, check=0)


def test_csv_bad_line(tmp_path):
    t = tmp_path / "t.csv"
    t.write_text("a,b\n1,2\n3\n4,5\n")
    p = run("pack", t, "-o", tmp_path / "ds", check=1)
    assert "t.csv:3" in p.stderr
    rep = run_json("pack", t, "-o", tmp_path / "ds2", "--on-error", "skip")
    assert rep["samples"] == 2
    assert rep["skipped"][0]["where"].endswith("t.csv:3")


def test_jsonl_pack(tmp_path):
    t = tmp_path / "t.jsonl"
    t.write_text('{"key": "r1", "label": 1, "x": 2.5, "tags": [1, 2]}\n'
                 '{"key": "r2", "label": 0, "extra": "hi"}\n')
    out = tmp_path / "ds"
    rep = run_json("pack", t, "-o", out)
    assert rep["format"] == "jsonl" and rep["samples"] == 2
    info = run_json("inspect", out)
    names = [c["name"] for c in info["columns"]]
    assert names[:4] == ["key", "label", "width", "height"]
    assert {"x", "tags", "extra"} <= set(names)


def test_kill_during_pack_leaves_no_dataset(tmp_path):
    """kill -9 pack at several moments while it writes: never a dataset that looks valid."""
    src = tmp_path / "big"
    blob = jpeg_bytes(400, 300, seed=5, quality=95)
    for c in range(4):
        for i in range(150):
            write(str(src / f"c{c}" / f"{i:04d}.jpg"), blob)
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2):
        out = tmp_path / f"ds{delay}"
        proc = subprocess.Popen([BIN, "pack", str(src), "-o", str(out), "--threads", "1",
                                 "--shard-size", "2M", "--block-size", "64k"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():  # it finished before the kill: then it must be complete and valid
            run("verify", out, check=0)
        # whatever is left is a hidden temporary folder, and nothing under OUT
        leftovers = [n for n in os.listdir(tmp_path) if n.startswith(f".ds{delay}")]
        for n in leftovers:
            assert ".tmp-" in n
            run("inspect", tmp_path / n, check=2)  # no manifest: not a dataset
