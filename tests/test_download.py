"""The dataset downloader, against a local HTTP server on 127.0.0.1 serving tiny IDX files.

Nothing here leaves the loopback interface: the server listens on 127.0.0.1 on a free
port, proxies are switched off, and every download uses a short timeout.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from nntrain.data import download as dl
from nntrain.data.download import (
    DOWNLOADABLE,
    ROLES,
    RemoteDataset,
    cache_dir,
    download,
    is_available,
    load,
    status,
)
from nntrain.data.idx import write_idx
from nntrain.errors import NntrainError

TIMEOUT = 2.0
FILENAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch):
    """urllib must talk to 127.0.0.1 directly, whatever proxy the environment names."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("NNTRAIN_DATA", raising=False)


def tiny_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "train_images": rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(20) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8),
        "test_labels": np.arange(10, dtype=np.uint8)[::-1].copy(),
    }


def make_files(folder: Path, arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    """Write the arrays as gzip IDX files into `folder`; role -> file bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for role, array in arrays.items():
        write_idx(folder / FILENAMES[role], array)
        out[role] = (folder / FILENAMES[role]).read_bytes()
    return out


def make_spec(files: dict[str, bytes], mirrors, name: str = "tiny", classes=None) -> RemoteDataset:
    return RemoteDataset(
        name=name,
        files={role: (FILENAMES[role], hashlib.sha256(data).hexdigest()) for role, data in files.items()},
        mirrors=list(mirrors),
        classes=list(classes or [str(d) for d in range(10)]),
        description="a tiny test dataset",
    )


class Server:
    """A ThreadingHTTPServer on 127.0.0.1; routes map a URL path to what the handler does."""

    def __init__(self):
        self.routes: dict[str, tuple] = {}
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.release = threading.Event()  # lets a stalling handler go at teardown
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                with server.lock:
                    server.requests.append(self.path)
                route = server.routes.get(self.path, ("status", 404))
                kind = route[0]
                self.close_connection = True
                if kind == "status":
                    self.send_error(route[1])
                elif kind == "ok":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(route[1])))
                    self.end_headers()
                    self.wfile.write(route[1])
                elif kind == "no_length":  # no Content-Length: the body ends when the connection does
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(route[1])
                elif kind == "drop":  # promise the whole file, send part of it, hang up
                    data = route[1]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                elif kind == "stall":  # headers, then nothing until the client gives up
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.wfile.write(b"\x1f\x8b")
                    self.wfile.flush()
                    server.release.wait(5)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, prefix: str) -> str:
        return f"http://127.0.0.1:{self.port}/{prefix.strip('/')}/"

    def serve(self, prefix: str, files: dict[str, bytes], kind: str = "ok", only: str | None = None) -> str:
        """Serve the files under /prefix/; `kind` for role `only` (or every file); the mirror URL."""
        for role, data in files.items():
            how = kind if only in (None, role) else "ok"
            self.routes[f"/{prefix}/{FILENAMES[role]}"] = (how, data)
        return self.url(prefix)

    def count(self, prefix: str = "") -> int:
        with self.lock:
            return sum(1 for r in self.requests if r.startswith(f"/{prefix}"))

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    s = Server()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def tiny(tmp_path):
    """(arrays, file bytes) of a tiny dataset: 20 training and 10 test images of 28x28."""
    arrays = tiny_arrays()
    return arrays, make_files(tmp_path / "source", arrays)


def leftovers(folder: Path) -> list[str]:
    """Files in the dataset folder that are not complete dataset files (temporary files)."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name not in FILENAMES.values())


class Log(list):
    def __call__(self, message):
        self.append(str(message))

    def text(self) -> str:
        return "\n".join(self)


def test_download_then_load_round_trips(server, tiny, tmp_path):
    arrays, files = tiny
    spec = make_spec(files, [server.serve("good", files)])
    cache, log = tmp_path / "cache", Log()
    folder = download(spec, cache, timeout=TIMEOUT, log=log)
    assert folder == cache / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILENAMES.values())
    assert status(spec, cache) == {role: "ok" for role in ROLES}
    assert is_available(spec, cache)
    train_x, train_y, test_x, test_y = load(spec, cache)
    assert train_x.shape == (20, 28, 28) and train_x.dtype == np.uint8
    assert train_y.shape == (20,) and test_x.shape == (10, 28, 28) and test_y.shape == (10,)
    for role, got in zip(ROLES, (train_x, train_y, test_x, test_y)):
        np.testing.assert_array_equal(got, arrays[role])
    assert server.count() == 4
    assert "SHA-256 ok" in log.text()


def test_second_download_makes_no_request(server, tiny, tmp_path):
    _, files = tiny
    spec = make_spec(files, [server.serve("good", files)])
    download(spec, tmp_path / "cache", timeout=TIMEOUT, log=Log())
    assert server.count() == 4
    log = Log()
    download(spec, tmp_path / "cache", timeout=TIMEOUT, log=log)
    assert server.count() == 4
    assert log.text().count("already present") == 4


def test_checksum_mismatch_fails_and_leaves_nothing(server, tiny, tmp_path):
    _, files = tiny
    spec = make_spec(files, [server.url("bad")])
    damaged = dict(files)
    data = bytearray(files["train_images"])
    data[len(data) // 2] ^= 0xFF
    damaged["train_images"] = bytes(data)
    server.serve("bad", damaged)
    with pytest.raises(NntrainError) as info:
        download(spec, tmp_path / "cache", timeout=TIMEOUT, log=Log())
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert "checksum mismatch" in message and server.url("bad") in message
    folder = tmp_path / "cache" / "tiny"
    assert not (folder / FILENAMES["train_images"]).exists()
    assert leftovers(folder) == []
    assert status(spec, tmp_path / "cache")["train_images"] == "missing"


def test_connection_dropped_mid_file(server, tiny, tmp_path):
    _, files = tiny
    spec = make_spec(files, [server.serve("drop", files, kind="drop", only="train_images")])
    with pytest.raises(NntrainError) as info:
        download(spec, tmp_path / "cache", timeout=TIMEOUT, log=Log())
    size = len(files["train_images"])
    assert f"connection closed after {size // 2} of {size} bytes" in str(info.value)
    folder = tmp_path / "cache" / "tiny"
    assert not (folder / FILENAMES["train_images"]).exists()
    assert leftovers(folder) == []


def test_dropped_connection_falls_back_to_the_next_mirror(server, tiny, tmp_path):
    arrays, files = tiny
    first = server.serve("drop", files, kind="drop")
    second = server.serve("good", files)
    log = Log()
    folder = download(make_spec(files, [first, second]), tmp_path / "cache", timeout=TIMEOUT, log=log)
    assert "connection closed after" in log.text()
    assert leftovers(folder) == []
    np.testing.assert_array_equal(load(make_spec(files, []), tmp_path / "cache")[0], arrays["train_images"])


@pytest.mark.parametrize("broken", ["missing", "bad_hash", "server_error"])
def test_first_mirror_broken_second_good(server, tiny, tmp_path, broken):
    _, files = tiny
    if broken == "missing":
        first = server.url("nothing-here")  # every file is a 404
    elif broken == "bad_hash":
        first = server.serve("other", {role: data + b"x" for role, data in files.items()})
    else:
        first = server.url("err")
        for name in FILENAMES.values():
            server.routes[f"/err/{name}"] = ("status", 500)
    second = server.serve("good", files)
    spec = make_spec(files, ["http://127.0.0.1:9/never-used/"])
    log = Log()
    folder = download(spec, tmp_path / "cache", mirrors=[first, second], timeout=TIMEOUT, log=log)
    assert status(spec, tmp_path / "cache") == {role: "ok" for role in ROLES}
    assert server.count("good") == 4
    expected = {"missing": "HTTP error 404", "bad_hash": "checksum mismatch", "server_error": "HTTP error 500"}[broken]
    assert log.text().count(expected) == 4
    assert leftovers(folder) == []


def test_every_mirror_failing_names_each_reason(server, tiny, tmp_path):
    _, files = tiny
    first = server.url("nothing-here")
    second = server.serve("drop", files, kind="drop")
    with pytest.raises(NntrainError) as info:
        download(make_spec(files, [first, second]), tmp_path / "cache", timeout=TIMEOUT, log=Log())
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and "2 mirror(s)" in message
    assert f"{first}train-images-idx3-ubyte.gz: HTTP error 404" in message
    assert f"{second}train-images-idx3-ubyte.gz: connection closed after" in message
    assert leftovers(tmp_path / "cache" / "tiny") == []


def test_connection_refused_is_a_mirror_failure(server, tiny, tmp_path):
    _, files = tiny
    # a port nobody listens on: bind one, close it, use its number
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    good = server.serve("good", files)
    log = Log()
    download(make_spec(files, [dead, good]), tmp_path / "cache", timeout=TIMEOUT, log=log)
    assert "cannot connect" in log.text()


def test_timeout_moves_on(server, tiny, tmp_path):
    _, files = tiny
    stalled = server.serve("stall", files, kind="stall", only="train_images")
    good = server.serve("good", files)
    log = Log()
    folder = download(make_spec(files, [stalled, good]), tmp_path / "cache", timeout=0.3, log=log)
    assert "timed out after 0.3 s" in log.text()
    assert status(make_spec(files, []), tmp_path / "cache")["train_images"] == "ok"
    assert leftovers(folder) == []


def test_response_without_content_length(server, tiny, tmp_path):
    arrays, files = tiny
    spec = make_spec(files, [server.serve("nolen", files, kind="no_length")])
    download(spec, tmp_path / "cache", timeout=TIMEOUT, log=Log())
    np.testing.assert_array_equal(load(spec, tmp_path / "cache")[3], arrays["test_labels"])


def test_present_file_with_wrong_hash_is_replaced(server, tiny, tmp_path):
    _, files = tiny
    spec = make_spec(files, [server.serve("good", files)])
    folder = download(spec, tmp_path / "cache", timeout=TIMEOUT, log=Log())
    (folder / FILENAMES["test_images"]).write_bytes(b"not the right file")
    assert status(spec, tmp_path / "cache")["test_images"] == "corrupt"
    log = Log()
    download(spec, tmp_path / "cache", timeout=TIMEOUT, log=log)
    assert server.count() == 5  # only the damaged file was fetched again
    assert "t10k-images-idx3-ubyte.gz: present" in log.text() and "SHA-256 is wrong" in log.text()
    assert (folder / FILENAMES["test_images"]).read_bytes() == files["test_images"]
    assert is_available(spec, tmp_path / "cache")


def test_corrupt_file_is_removed_even_when_no_mirror_works(server, tiny, tmp_path):
    _, files = tiny
    spec = make_spec(files, [server.url("nothing-here")])
    folder = tmp_path / "cache" / "tiny"
    folder.mkdir(parents=True)
    (folder / FILENAMES["train_images"]).write_bytes(b"junk")
    with pytest.raises(NntrainError):
        download(spec, tmp_path / "cache", timeout=TIMEOUT, log=Log())
    assert list(folder.iterdir()) == []


def test_status_reports_ok_missing_corrupt(server, tiny, tmp_path):
    _, files = tiny
    spec = make_spec(files, [server.serve("good", files)])
    cache = tmp_path / "cache"
    assert status(spec, cache) == {role: "missing" for role in ROLES}
    assert not is_available(spec, cache)
    folder = download(spec, cache, timeout=TIMEOUT, log=Log())
    (folder / FILENAMES["train_labels"]).unlink()
    with open(folder / FILENAMES["test_labels"], "ab") as f:
        f.write(b"\x00")
    assert status(spec, cache) == {
        "train_images": "ok",
        "train_labels": "missing",
        "test_images": "ok",
        "test_labels": "corrupt",
    }
    assert not is_available(spec, cache)


def test_load_without_files_says_how_to_download(tmp_path):
    with pytest.raises(NntrainError, match=r"`nntrain datasets download mnist --dir .*`"):
        load("mnist", tmp_path)
    spec = make_spec(tiny_arrays_files(tmp_path), [])
    with pytest.raises(NntrainError, match="nntrain datasets download tiny"):
        load(spec, tmp_path / "empty")


def tiny_arrays_files(tmp_path) -> dict[str, bytes]:
    return make_files(tmp_path / "source", tiny_arrays())


def put(cache: Path, name: str, arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    """Place IDX files for the arrays straight into the cache (no server)."""
    return make_files(cache / name, arrays)


def test_load_rejects_corrupt_file(tmp_path):
    files = put(tmp_path, "tiny", tiny_arrays())
    spec = make_spec(files, [])
    (tmp_path / "tiny" / FILENAMES["train_labels"]).write_bytes(b"\x00")
    with pytest.raises(NntrainError, match="damaged.*train-labels-idx1-ubyte.gz.*nntrain datasets download tiny"):
        load(spec, tmp_path)


def test_load_checks_label_count(tmp_path):
    arrays = tiny_arrays()
    arrays["train_labels"] = arrays["train_labels"][:19]
    spec = make_spec(put(tmp_path, "tiny", arrays), [])
    with pytest.raises(NntrainError, match="19 labels but .* 20 images"):
        load(spec, tmp_path)


def test_load_checks_label_range(tmp_path):
    arrays = tiny_arrays()
    spec = make_spec(put(tmp_path, "tiny", arrays), [], classes=["a", "b", "c"])
    with pytest.raises(NntrainError, match="label 3 is out of range.*3 classes"):
        load(spec, tmp_path)


def test_load_checks_image_layout(tmp_path):
    arrays = tiny_arrays()
    arrays["test_images"] = arrays["test_images"].reshape(10, 784)
    spec = make_spec(put(tmp_path, "tiny", arrays), [])
    with pytest.raises(NntrainError, match=r"t10k-images-idx3-ubyte.gz: expected uint8 images"):
        load(spec, tmp_path)


def test_load_reports_a_bad_idx_file(tmp_path):
    files = put(tmp_path, "tiny", tiny_arrays())
    path = tmp_path / "tiny" / FILENAMES["test_images"]
    path.write_bytes(files["test_images"][:-10])  # truncated gzip, and its hash pinned as if right
    files["test_images"] = path.read_bytes()
    with pytest.raises(NntrainError, match="t10k-images-idx3-ubyte.gz.*truncated"):
        load(make_spec(files, []), tmp_path)


def test_nntrain_data_is_respected(server, tiny, tmp_path, monkeypatch):
    arrays, files = tiny
    spec = make_spec(files, [server.serve("good", files)])
    monkeypatch.setenv("NNTRAIN_DATA", str(tmp_path / "env-cache"))
    assert cache_dir() == tmp_path / "env-cache"
    assert cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    folder = download(spec, timeout=TIMEOUT, log=Log())
    assert folder == tmp_path / "env-cache" / "tiny"
    assert is_available(spec)
    np.testing.assert_array_equal(load(spec)[2], arrays["test_images"])


def test_default_cache_is_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("NNTRAIN_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "nntrain"
    monkeypatch.setenv("NNTRAIN_DATA", "")
    assert cache_dir() == tmp_path / ".cache" / "nntrain"


def test_keyboard_interrupt_leaves_no_temp_file(server, tiny, tmp_path, monkeypatch):
    _, files = tiny
    spec = make_spec(files, [server.serve("good", files)])

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(dl.os, "fsync", interrupted)  # Ctrl-C once the file is written, before the rename
    with pytest.raises(KeyboardInterrupt):
        download(spec, tmp_path / "cache", timeout=TIMEOUT, log=Log())
    monkeypatch.undo()
    assert list((tmp_path / "cache" / "tiny").iterdir()) == []


def test_stale_temp_files_of_dead_processes_are_removed(server, tiny, tmp_path):
    _, files = tiny
    folder = tmp_path / "cache" / "tiny"
    folder.mkdir(parents=True)
    stale = folder / ".train-images-idx3-ubyte.gz.part-999999999-deadbeef"
    stale.write_bytes(b"half a file")
    log = Log()
    download(make_spec(files, [server.serve("good", files)]), tmp_path / "cache", timeout=TIMEOUT, log=log)
    assert not stale.exists()
    assert "interrupted download" in log.text()


def test_file_url_mirror(tiny, tmp_path):
    arrays, files = tiny
    spec = make_spec(files, [(tmp_path / "source").as_uri()])
    download(spec, tmp_path / "cache", timeout=TIMEOUT, log=Log())
    np.testing.assert_array_equal(load(spec, tmp_path / "cache")[1], arrays["train_labels"])


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(NntrainError, match="did you mean 'mnist'"):
        download("mnits", tmp_path, log=Log())
    with pytest.raises(NntrainError, match="unknown downloadable dataset"):
        status("cifar10", tmp_path)


def test_no_mirrors(tiny, tmp_path):
    _, files = tiny
    with pytest.raises(NntrainError, match="no mirror"):
        download(make_spec(files, []), tmp_path, log=Log())


def test_registry_of_downloadable_datasets():
    assert set(DOWNLOADABLE) == {"mnist", "fashion_mnist"}
    for name, spec in DOWNLOADABLE.items():
        assert spec.name == name
        assert set(spec.files) == set(ROLES)
        assert {role: f for role, (f, _) in spec.files.items()} == FILENAMES
        assert all(re.fullmatch(r"[0-9a-f]{64}", sha) for _, sha in spec.files.values())
        assert len({sha for _, sha in spec.files.values()}) == 4
        assert len(spec.classes) == 10 and spec.mirrors
        assert spec.description and spec.source and spec.license and spec.citation
    assert DOWNLOADABLE["mnist"].classes == [str(d) for d in range(10)]
    assert DOWNLOADABLE["mnist"].mirrors[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert DOWNLOADABLE["fashion_mnist"].classes[0] == "T-shirt/top"
    assert DOWNLOADABLE["fashion_mnist"].classes[-1] == "Ankle boot"


def test_status_of_official_dataset_in_empty_cache(tmp_path):
    assert status("mnist", tmp_path) == {role: "missing" for role in ROLES}
    assert not is_available("fashion_mnist", tmp_path)
    # a spec can be copied with other mirrors (what `--mirror` in the CLI does)
    assert replace(DOWNLOADABLE["mnist"], mirrors=["file:///x/"]).files == DOWNLOADABLE["mnist"].files
    assert not os.listdir(tmp_path)
