"""Downloadable datasets (MNIST, Fashion-MNIST): a cache, a verified downloader and a loader.

Files live in cache_dir()/<name>/ -- the directory given, else $NNTRAIN_DATA, else
~/.cache/nntrain. `download` fetches every file that is not already present with the right
SHA-256, trying each mirror in turn. A file is streamed into a temporary file in the
target directory while being hashed; only when its length (Content-Length, when the
server sends one) and SHA-256 are right is it fsynced and renamed into place (then the
directory is fsynced). A wrong hash, a dropped connection, an HTTP error or a timeout
removes the temporary file and moves on to the next mirror; an interrupted download
(KeyboardInterrupt included) removes it too. So the cache never holds a partial or corrupt
file under a dataset's file name.

Only the standard library is used (urllib); `file://` mirrors work too.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..engine.registry import did_you_mean
from ..errors import NntrainError
from ..fileio import fsync_dir

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
CHUNK = 1 << 16


@dataclass(frozen=True)
class RemoteDataset:
    """A dataset of four IDX files: role -> (file name, SHA-256 of the file as served)."""

    name: str
    files: dict[str, tuple[str, str]]
    mirrors: list[str]
    classes: list[str]
    description: str = ""
    source: str = ""
    license: str = ""
    citation: str = ""


MNIST = RemoteDataset(
    name="mnist",
    files={
        # SHA-256 of the official gzip files, as pinned by tensorflow/datasets
        # (url_checksums/mnist.txt) and other projects that verify them.
        "train_images": (
            "train-images-idx3-ubyte.gz",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        "train_labels": (
            "train-labels-idx1-ubyte.gz",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
        "test_images": (
            "t10k-images-idx3-ubyte.gz",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        "test_labels": (
            "t10k-labels-idx1-ubyte.gz",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    },
    mirrors=[
        "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror
        "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow Datasets' mirror
    ],
    classes=[str(d) for d in range(10)],
    description="Handwritten digits: 60,000 training and 10,000 test images, 28x28 grayscale, 10 classes.",
    source="http://yann.lecun.com/exdb/mnist/",
    license=(
        "Yann LeCun and Corinna Cortes hold the copyright of MNIST, a derivative work from the original NIST"
        " datasets; made available under the terms of the Creative Commons Attribution-Share Alike 3.0 license."
    ),
    citation=(
        "Y. LeCun, L. Bottou, Y. Bengio and P. Haffner. Gradient-based learning applied to document recognition."
        " Proceedings of the IEEE, 86(11):2278-2324, 1998."
    ),
)

FASHION_MNIST = RemoteDataset(
    name="fashion_mnist",
    files={
        # SHA-256 of the current official gzip files, as pinned by tensorflow/datasets
        # (url_checksums/fashion_mnist.txt), Britefury/batchup and FluxML/Flux.jl.
        "train_images": (
            "train-images-idx3-ubyte.gz",
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        ),
        "train_labels": (
            "train-labels-idx1-ubyte.gz",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        ),
        "test_images": (
            "t10k-images-idx3-ubyte.gz",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        ),
        "test_labels": (
            "t10k-labels-idx1-ubyte.gz",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        ),
    },
    mirrors=["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    classes=["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    description=(
        "Zalando's article images: 60,000 training and 10,000 test images, 28x28 grayscale, 10 classes;"
        " a drop-in replacement for MNIST."
    ),
    source="https://github.com/zalandoresearch/fashion-mnist",
    license="MIT License (Copyright (c) 2017 Zalando SE)",
    citation=(
        "H. Xiao, K. Rasul and R. Vollgraf. Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine"
        " Learning Algorithms. arXiv:1708.07747, 2017."
    ),
)

DOWNLOADABLE: dict[str, RemoteDataset] = {"mnist": MNIST, "fashion_mnist": FASHION_MNIST}


def cache_dir(directory=None) -> Path:
    """Where downloaded datasets live: `directory`, else $NNTRAIN_DATA, else ~/.cache/nntrain."""
    if directory is not None and str(directory) != "":
        return Path(directory).expanduser()
    env = os.environ.get("NNTRAIN_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "nntrain"


def _spec(name_or_spec) -> RemoteDataset:
    if isinstance(name_or_spec, RemoteDataset):
        return name_or_spec
    name = str(name_or_spec)
    if name not in DOWNLOADABLE:
        raise NntrainError(
            f"unknown downloadable dataset '{name}'{did_you_mean(name, DOWNLOADABLE)};"
            f" choose from: {', '.join(DOWNLOADABLE)}"
        )
    return DOWNLOADABLE[name]


def dataset_dir(name_or_spec, directory=None) -> Path:
    """The folder of one dataset: cache_dir(directory)/<name>."""
    return cache_dir(directory) / _spec(name_or_spec).name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _file_status(path: Path, sha256: str) -> str:
    if not path.is_file():
        return "missing"
    try:
        return "ok" if sha256_file(path) == sha256 else "corrupt"
    except OSError:
        return "corrupt"


def status(name, directory=None) -> dict[str, str]:
    """role -> 'ok' (present, right SHA-256), 'missing' or 'corrupt' (present, wrong SHA-256 or unreadable)."""
    spec = _spec(name)
    folder = dataset_dir(spec, directory)
    return {role: _file_status(folder / filename, sha) for role, (filename, sha) in spec.files.items()}


def is_available(name, directory=None) -> bool:
    """True when every file of the dataset is present with the right SHA-256."""
    return all(s == "ok" for s in status(name, directory).values())


class _MirrorFailed(Exception):
    """One mirror could not deliver one file; the reason is the message."""


def _temp_name(filename: str) -> str:
    import secrets

    return f".{filename}.part-{os.getpid()}-{secrets.token_hex(4)}"


_TEMP_PATTERN = re.compile(r"^\.(?P<file>.+)\.part-(?P<pid>\d+)-[0-9a-f]{8}$")


def _remove_stale_temps(folder: Path, log) -> None:
    """Delete temporary files left by a download process that no longer exists (killed with SIGKILL)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        match = _TEMP_PATTERN.match(entry.name)
        if not match or _process_alive(int(match["pid"])):
            continue
        try:
            entry.unlink()
            log(f"removed {entry}, left by an interrupted download")
        except OSError:
            pass


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _join(base: str, filename: str) -> str:
    return base.rstrip("/") + "/" + filename


def _fetch(url: str, dest: Path, sha256: str, timeout: float) -> int:
    """Download `url` into `dest` atomically, checking length and SHA-256; the number of bytes.

    _MirrorFailed for anything the mirror did wrong; NntrainError for a local problem
    (cannot write the cache). The temporary file is removed whatever happens.
    """
    # Imported here, not at the top: every config check imports this module, only a download needs them.
    import http.client
    import urllib.error
    import urllib.request

    tmp = dest.with_name(_temp_name(dest.name))
    request = urllib.request.Request(url, headers={"User-Agent": f"nntrain/{__version__}"})
    try:
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as e:
            e.close()
            raise _MirrorFailed(f"HTTP error {e.code} {e.reason}") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, TimeoutError):
                raise _MirrorFailed(f"timed out after {timeout:g} s while connecting") from None
            raise _MirrorFailed(f"cannot connect: {reason}") from None
        except TimeoutError:
            raise _MirrorFailed(f"timed out after {timeout:g} s waiting for the response") from None
        except (http.client.HTTPException, OSError, ValueError) as e:
            raise _MirrorFailed(f"request failed: {type(e).__name__}: {e}") from None
        with response:
            expected = _content_length(response)
            try:
                f = open(tmp, "xb")  # noqa: SIM115 (closed by the `with f` below)
            except OSError as e:
                raise NntrainError(f"cannot write into the dataset cache {dest.parent}: {e}") from None
            digest, received = hashlib.sha256(), 0
            with f:
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except TimeoutError:
                        raise _MirrorFailed(
                            f"timed out after {timeout:g} s without data, after {received} bytes"
                        ) from None
                    except (http.client.HTTPException, OSError) as e:
                        raise _MirrorFailed(
                            f"connection failed after {received} bytes ({type(e).__name__}: {e})"
                        ) from None
                    if not chunk:
                        break
                    digest.update(chunk)
                    received += len(chunk)
                    try:
                        f.write(chunk)
                    except OSError as e:
                        raise NntrainError(f"cannot write {tmp}: {e}") from None
                if expected is not None and received != expected:
                    raise _MirrorFailed(f"connection closed after {received} of {expected} bytes (Content-Length)")
                actual = digest.hexdigest()
                if actual != sha256:
                    raise _MirrorFailed(f"checksum mismatch: SHA-256 {actual}, expected {sha256} ({received} bytes)")
                try:
                    f.flush()
                    os.fsync(f.fileno())
                except OSError as e:
                    raise NntrainError(f"cannot write {tmp}: {e}") from None
        try:
            os.replace(tmp, dest)
        except OSError as e:
            raise NntrainError(f"cannot move the downloaded {tmp} to {dest}: {e}") from None
        fsync_dir(dest.parent)
        return received
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        except OSError:  # pragma: no cover - nothing better to do
            pass


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        return None
    return n if n >= 0 else None


def download(
    name_or_spec,
    directory=None,
    mirrors=None,
    timeout: float = 30,
    log: Callable[[str], None] = print,
) -> Path:
    """Fetch every file of a dataset that is not already in the cache with the right SHA-256.

    `mirrors` (base URLs) replaces the dataset's own list. A file present with a wrong hash
    is deleted, reported and fetched again. Returns the dataset's folder. NntrainError when
    a file cannot be had from any mirror, naming the file, the mirrors tried and each reason.
    """
    spec = _spec(name_or_spec)
    mirrors = list(spec.mirrors if mirrors is None else mirrors)
    if not mirrors:
        raise NntrainError(f"no mirror to download '{spec.name}' from")
    folder = dataset_dir(spec, directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NntrainError(f"cannot create the dataset cache {folder}: {e}") from None
    _remove_stale_temps(folder, log)
    for role, (filename, sha256) in spec.files.items():
        dest = folder / filename
        state = _file_status(dest, sha256)
        if state == "ok":
            log(f"{filename}: already present, SHA-256 ok")
            continue
        if state == "corrupt":
            log(f"{filename}: present in {folder} but its SHA-256 is wrong; deleting it and downloading it again")
            try:
                dest.unlink()
            except OSError as e:
                raise NntrainError(f"cannot delete the corrupt {dest}: {e}") from None
            fsync_dir(folder)
        failures = []
        for base in mirrors:
            url = _join(base, filename)
            log(f"{filename}: downloading {url}")
            try:
                size = _fetch(url, dest, sha256, timeout)
            except _MirrorFailed as e:
                failures.append(f"{url}: {e}")
                log(f"{filename}: {url} failed: {e}")
                continue
            log(f"{filename}: {size} bytes, SHA-256 ok")
            break
        else:
            reasons = "\n".join(f"  - {f}" for f in failures)
            raise NntrainError(
                f"could not download {filename} ({role} of '{spec.name}') from any of {len(mirrors)} mirror(s);"
                f" nothing was saved for it in {folder}:\n{reasons}"
            )
    return folder


def load(name, directory=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images (N, H, W) uint8, train labels (N,), test images, test labels) of a downloaded dataset.

    NntrainError when a file is missing (with the command that downloads it), damaged
    (SHA-256), not a valid IDX file, or when images and labels do not match.
    """
    from .idx import read_idx  # with gzip: only loading a downloaded dataset needs it

    spec = _spec(name)
    folder = dataset_dir(spec, directory)
    states = status(spec, directory)
    command = f"nntrain datasets download {spec.name}" + (f" --dir {directory}" if directory is not None else "")
    missing = [spec.files[r][0] for r, s in states.items() if s == "missing"]
    if missing:
        raise NntrainError(
            f"dataset '{spec.name}' is not downloaded: {', '.join(missing)} not found in {folder};"
            f" run `{command}` first"
        )
    corrupt = [spec.files[r][0] for r, s in states.items() if s == "corrupt"]
    if corrupt:
        raise NntrainError(
            f"dataset '{spec.name}' is damaged: {', '.join(corrupt)} in {folder} do(es) not have the expected"
            f" SHA-256; run `{command}` to fetch them again"
        )
    arrays = {role: read_idx(folder / spec.files[role][0]) for role in ROLES}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        images_file, labels_file = folder / spec.files[f"{split}_images"][0], folder / spec.files[f"{split}_labels"][0]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise NntrainError(
                f"{images_file}: expected uint8 images of shape (N, height, width), got {images.dtype} {images.shape}"
            )
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise NntrainError(
                f"{labels_file}: expected integer labels of shape (N,), got {labels.dtype} {labels.shape}"
            )
        if len(labels) != len(images):
            raise NntrainError(f"{labels_file} has {len(labels)} labels but {images_file} has {len(images)} images")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(spec.classes)):
            bad = labels[(labels < 0) | (labels >= len(spec.classes))][0]
            raise NntrainError(
                f"{labels_file}: label {int(bad)} is out of range; '{spec.name}' has {len(spec.classes)} classes"
                f" (0 to {len(spec.classes) - 1})"
            )
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise NntrainError(
            f"'{spec.name}': training images are {arrays['train_images'].shape[1:]}"
            f" but test images are {arrays['test_images'].shape[1:]}"
        )
    return arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"]
