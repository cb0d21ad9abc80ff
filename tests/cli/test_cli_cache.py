"""End-to-end tests of the pipeline cache: `softpipe run`, `status --why`, restores from the run
cache, early cutoff, failures keeping the previous outputs, locking and gc."""
import json
import os
import subprocess
import textwrap
import time

import pytest

from conftest import BIN, run

PIPELINE = """\
stages:
  prepare:
    cmd: python3 -c "import sys; open('data/clean.txt','w').write(open('data/raw.txt').read().upper())" && echo prepared >> log.txt
    deps: [data/raw.txt]
    outs: [data/clean.txt]
  train:
    cmd: python3 train.py
    deps: [train.py, data/clean.txt]
    params: [train.lr]
    outs: [models/]
"""

TRAIN = """\
import os, re
lr = re.search(r"lr: *(\\S+)", open("params.yaml").read()).group(1)
os.makedirs("models", exist_ok=True)
open("models/model.txt", "w").write(f"lr={lr} data={open('data/clean.txt').read()}")
open("models/extra.txt", "w").write("x")
open("log.txt", "a").write("trained\\n")
"""


@pytest.fixture
def project(tmp_path):
    d = tmp_path / "proj"
    (d / "data").mkdir(parents=True)
    (d / "data" / "raw.txt").write_text("hello")
    (d / "softpipe.yaml").write_text(PIPELINE)
    (d / "params.yaml").write_text("train:\n  lr: 0.1\n")
    (d / "train.py").write_text(TRAIN)
    return d


def sp(project, *args, check=None):
    return run(*args, "-C", project, check=check)


def status(project):
    out = json.loads(sp(project, "status", "--json").stdout)
    return {s["name"]: s for s in out["stages"]}


def log(project):
    p = project / "log.txt"
    return p.read_text().split() if p.exists() else []


def test_run_status_why_restore(project):
    st = status(project)
    assert st["prepare"]["state"] == "stale" and "never run here" in st["prepare"]["why"]
    sp(project, "run", check=0)
    assert log(project) == ["prepared", "trained"]
    assert (project / "models" / "model.txt").read_text() == "lr=0.1 data=HELLO"
    assert all(s["state"] == "up to date" for s in status(project).values())
    sp(project, "status", check=0)

    # a param change reruns only the stage that reads it, and says why
    (project / "params.yaml").write_text("train:\n  lr: 0.01\n")
    p = sp(project, "status", "--why", check=1)
    assert "param train.lr changed 0.1 -> 0.01" in p.stdout
    st = status(project)
    assert st["prepare"]["state"] == "up to date" and st["train"]["state"] == "stale"
    sp(project, "run", check=0)
    assert log(project) == ["prepared", "trained", "trained"]
    assert (project / "models" / "model.txt").read_text() == "lr=0.01 data=HELLO"

    # switching back restores from the run cache without running
    (project / "params.yaml").write_text("train:\n  lr: 0.1\n")
    assert status(project)["train"]["state"] == "restorable"
    t0 = time.perf_counter()
    p = sp(project, "run", check=0)
    assert "restored" in p.stdout
    assert log(project) == ["prepared", "trained", "trained"]
    assert (project / "models" / "model.txt").read_text() == "lr=0.1 data=HELLO"
    assert (project / "models" / "extra.txt").read_text() == "x"
    assert all(s["state"] == "up to date" for s in status(project).values())

    # a dep change: the reason names the dep and both digests
    (project / "data" / "raw.txt").write_text("world")
    p = sp(project, "status", "--why", check=1)
    assert "dep data/raw.txt changed (sha256 " in p.stdout
    assert "upstream stage 'prepare' is not up to date" in p.stdout


def test_early_cutoff_and_command_change(project):
    sp(project, "run", check=0)
    # same content written again by a changed command: train does not rerun
    text = (project / "softpipe.yaml").read_text().replace("echo prepared", "echo prepared  ")
    (project / "softpipe.yaml").write_text(text)
    p = sp(project, "status", "--why", check=1)
    assert "command changed" in p.stdout
    sp(project, "run", check=0)
    assert log(project) == ["prepared", "trained", "prepared"]


def test_failure_keeps_previous_outputs(project):
    sp(project, "run", check=0)
    before = (project / "models" / "model.txt").read_text()
    (project / "train.py").write_text(TRAIN.replace('open("log.txt"', 'raise SystemExit(3)\nopen("log.txt"'))
    p = sp(project, "run", check=1)
    assert "train" in p.stderr and "exit status 3" in p.stderr
    assert (project / "models" / "model.txt").read_text() == before
    assert status(project)["train"]["state"] == "stale"


def test_modified_output_is_reported_and_restored(project):
    sp(project, "run", check=0)
    os.chmod(project / "data" / "clean.txt", 0o644)
    (project / "data" / "clean.txt").write_text("tampered")
    p = sp(project, "status", "--why", check=1)
    assert "output data/clean.txt was modified" in p.stdout
    sp(project, "run", check=0)
    assert (project / "data" / "clean.txt").read_text() == "HELLO"
    assert log(project) == ["prepared", "trained"]  # restored, not rerun


def test_errors_name_file_line_and_stage(project):
    (project / "softpipe.yaml").write_text("stages:\n  a:\n    cmd: echo\n    dpes: [x]\n")
    p = sp(project, "status", check=1)
    assert "softpipe.yaml:4" in p.stderr and "'a'" in p.stderr and "dpes" in p.stderr
    run("status", "-C", project / "nope", check=2)
    assert run("run", "--help", check=0).stdout.startswith("usage: softpipe run")


def test_concurrent_runs_wait_for_each_other(project):
    (project / "softpipe.yaml").write_text(textwrap.dedent("""\
        stages:
          slow:
            cmd: sleep 1 && date +%s%N >> stamps.txt
            outs: [out.txt]
        """).replace("date", "echo x > out.txt; date"))
    a = subprocess.Popen([BIN, "run", "-C", str(project), "--force"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.2)
    b = subprocess.run([BIN, "run", "-C", str(project), "--force"], capture_output=True, text=True)
    a.wait()
    assert a.returncode == 0 and b.returncode == 0
    assert "waiting" in b.stdout
    assert len((project / "stamps.txt").read_text().split()) == 2


def test_gc(project):
    sp(project, "run", check=0)
    (project / "params.yaml").write_text("train:\n  lr: 0.5\n")
    sp(project, "run", check=0)
    out = json.loads(sp(project, "gc", "--keep-last", "1", "--dry-run", "--json", check=0).stdout)
    assert out["dry_run"] is True
    sp(project, "gc", check=0)
    assert all(s["state"] == "up to date" for s in status(project).values())
