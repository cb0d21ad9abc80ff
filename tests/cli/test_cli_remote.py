"""End-to-end tests of remote caches: `softpipe push`, `pull` and `run --remote` against Debian's
nginx serving WebDAV PUT on a loopback port (the Bazel HTTP cache protocol: <base>/ac/<key>,
<base>/cas/<sha256>). Skipped when nginx is not installed (scripts/install-deps.sh installs it)."""
import hashlib
import os
import shutil
import socket
import subprocess
import time

import pytest

from conftest import BIN, run

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

PIPELINE = """\
stages:
  prepare:
    cmd: python3 -c "open('data/clean.txt','w').write(open('data/raw.txt').read().upper())" && echo prepared >> log.txt
    deps: [data/raw.txt]
    outs: [data/clean.txt]
  train:
    cmd: mkdir -p models && cp data/clean.txt models/model.txt && echo x > models/extra.txt && echo trained >> log.txt
    deps: [data/clean.txt]
    outs: [models/]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def remote(tmp_path):
    """nginx with WebDAV PUT on 127.0.0.1:<port>; yields (base URL, the folder it serves)."""
    if not NGINX:
        pytest.skip("nginx is not installed (scripts/install-deps.sh installs it)")
    d = tmp_path / "nginx"
    root = tmp_path / "remote"
    for sub in ("", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    root.mkdir()
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    (d / "nginx.conf").write_text(f"""{user}worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            client_max_body_size 0;
        }}
    }}
}}
""")
    proc = subprocess.Popen([NGINX, "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"nginx did not start: {proc.stderr.read().decode()}")
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/cache", root / "cache"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def make_project(d):
    (d / "data").mkdir(parents=True)
    (d / "data" / "raw.txt").write_text("hello")
    (d / "softpipe.yaml").write_text(PIPELINE)
    return d


def log(project):
    p = project / "log.txt"
    return p.read_text().split() if p.exists() else []


def sp(project, *args, check=None):
    return run(*args, "-C", project, check=check)


def test_remote_round_trip(tmp_path, remote):
    url, served = remote
    a = make_project(tmp_path / "a")
    sp(a, "run", check=0)
    assert log(a) == ["prepared", "trained"]
    p = sp(a, "push", "--remote", url, "--json", check=0)
    assert '"results": 2' in p.stdout and '"blobs": 2' in p.stdout, p.stdout  # HELLO shared
    assert len(list((served / "ac").iterdir())) == 2
    for blob in (served / "cas").iterdir():  # named by the sha256 of their bytes
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    # pushing again sends no blob
    p = sp(a, "push", "--remote", url, "--json", check=0)
    assert '"blobs": 0' in p.stdout and '"blobs_present": 3' in p.stdout, p.stdout  # per result

    # a second clone restores both stages without running them
    b = make_project(tmp_path / "b")
    p = sp(b, "run", "--remote", url, check=0)
    assert "pulled" in p.stdout and "restored" in p.stdout, p.stdout
    assert log(b) == []
    assert (b / "data" / "clean.txt").read_text() == "HELLO"
    assert (b / "models" / "model.txt").read_text() == "HELLO"
    assert (b / "models" / "extra.txt").read_text() == "x\n"
    st = sp(b, "status", "--json", check=0)
    assert '"stale"' not in st.stdout
    # the pulled results are in b's local cache now: a fresh run needs no remote
    (b / "models" / "model.txt").unlink()
    p = sp(b, "run", check=0)
    assert log(b) == [] and (b / "models" / "model.txt").read_text() == "HELLO"

    # `pull` fetches the results of the current keys without restoring; dependent stages wait
    c = make_project(tmp_path / "c")
    p = sp(c, "pull", "--remote", url, "--json", check=0)
    assert '"results": 1' in p.stdout and '"skipped": 1' in p.stdout, p.stdout
    assert not (c / "data" / "clean.txt").exists()
    sp(c, "run", "prepare", check=0)  # restored from the local cache, not run
    assert log(c) == []

    # a stage that runs with --remote pushes its result
    (a / "data" / "raw.txt").write_text("bye")
    p = sp(a, "run", "--remote", url, check=0)
    assert "pushed" in p.stdout, p.stdout
    assert len(list((served / "ac").iterdir())) == 4


def test_remote_tampered_blob_rejected(tmp_path, remote):
    url, served = remote
    a = make_project(tmp_path / "a")
    sp(a, "run", check=0)
    sp(a, "push", "--remote", url, check=0)
    digest = hashlib.sha256(b"HELLO").hexdigest()
    blob = served / "cas" / digest
    assert blob.exists()
    blob.write_bytes(b"EVIL!")

    b = make_project(tmp_path / "b")
    p = sp(b, "run", "--remote", url, check=1)
    assert "does not match its digest" in p.stderr and digest in p.stderr, p.stderr
    assert f"{url}/cas/{digest}" in p.stderr
    assert not (b / "data" / "clean.txt").exists()
    assert log(b) == []
    # the bad blob never entered the store, and nothing was recorded
    assert not (b / ".softpipe" / "cache" / digest[:2] / digest[2:]).exists()
    assert not any((b / ".softpipe" / "runs").rglob("*.json"))
    assert not any((b / ".softpipe" / "cache" / "tmp").iterdir())
    p = sp(b, "pull", "--remote", url, check=1)
    assert digest in p.stderr


def test_remote_unreachable(tmp_path):
    a = make_project(tmp_path / "a")
    sp(a, "run", check=0)
    url = f"http://127.0.0.1:{free_port()}/cache"
    env = dict(os.environ, SOFTPIPE_REMOTE_BACKOFF="0.01")
    t0 = time.time()
    p = subprocess.run([BIN, "push", "--remote", url, "-C", str(a)],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 3, p.stderr
    assert url in p.stderr and "after 4 tries" in p.stderr, p.stderr
    assert time.time() - t0 < 10
    p = sp(a, "push", "--remote", "ftp://example.com/x", check=2)
    assert "http://" in p.stderr
    p = sp(a, "push", check=2)
    assert "--remote" in p.stderr
