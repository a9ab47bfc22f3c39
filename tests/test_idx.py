"""The IDX reader and writer: round trips for every dtype and rank, and every kind of bad file."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from nntrain.data.idx import read_idx, write_idx
from nntrain.errors import NntrainError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
SHAPES = [(7,), (3, 5), (4, 3, 2), (2, 3, 2, 2)]


def sample(dtype, shape) -> np.ndarray:
    rng = np.random.default_rng(0)
    n = int(np.prod(shape))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=n, endpoint=True, dtype=np.int64)
        values[0], values[-1] = info.min, info.max  # the extremes survive the byte swap
        return values.astype(dtype).reshape(shape)
    return (rng.standard_normal(n) * 1e3).astype(dtype).reshape(shape)


def idx_bytes(code: int, shape, payload: bytes) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s)}d")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip(tmp_path, dtype, shape, compress):
    array = sample(dtype, shape)
    path = tmp_path / "a.idx"
    write_idx(path, array, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == shape
    assert back.flags.c_contiguous and back.flags.writeable
    np.testing.assert_array_equal(back, array)


def test_big_endian_on_disk_and_mnist_header(tmp_path):
    path = tmp_path / "x"
    write_idx(path, np.array([[1, 256]], dtype=np.int16), compress=False)
    assert path.read_bytes() == bytes([0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 1, 0])
    labels = tmp_path / "labels"
    write_idx(labels, np.arange(3, dtype=np.uint8), compress=False)
    assert labels.read_bytes()[:4] == struct.pack(">I", 2049)  # MNIST's label magic number


def test_gzip_is_detected_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz_without_suffix = tmp_path / "images"
    write_idx(gz_without_suffix, array, compress=True)
    plain_with_gz_suffix = tmp_path / "images.gz"
    write_idx(plain_with_gz_suffix, array, compress=False)
    np.testing.assert_array_equal(read_idx(gz_without_suffix), array)
    np.testing.assert_array_equal(read_idx(plain_with_gz_suffix), array)


def test_compressed_output_is_deterministic(tmp_path):
    array = np.arange(50, dtype=np.uint8)
    write_idx(tmp_path / "a", array)
    write_idx(tmp_path / "b", array)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_zero_length_dimension(tmp_path):
    write_idx(tmp_path / "e", np.zeros((0, 28, 28), dtype=np.uint8))
    assert read_idx(tmp_path / "e").shape == (0, 28, 28)


def expect_error(path, *fragments):
    with pytest.raises(NntrainError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_bad_magic(tmp_path, compress):
    path = tmp_path / "bad"
    data = b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"ab"
    path.write_bytes(gzip.compress(data) if compress else data)
    expect_error(path, "bad magic number", "0x01000801")


def test_text_file_is_bad_magic(tmp_path):
    path = tmp_path / "readme.txt"
    path.write_text("hello, this is not an IDX file\n")
    expect_error(path, "bad magic number")


@pytest.mark.parametrize("code", [0x00, 0x0A, 0x0F, 0xFF])
def test_unknown_dtype_code(tmp_path, code):
    path = tmp_path / "bad"
    path.write_bytes(idx_bytes(code, (2,), b"\x00\x00"))
    expect_error(path, "unknown IDX dtype code", f"0x{code:02X}")


@pytest.mark.parametrize("ndim", [0, 5])
def test_bad_number_of_dimensions(tmp_path, ndim):
    path = tmp_path / "bad"
    path.write_bytes(bytes([0, 0, 0x08, ndim]) + b"\x00" * 64)
    expect_error(path, f"{ndim} dimensions")


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_truncated_payload(tmp_path, compress):
    data = idx_bytes(0x08, (10, 28, 28), bytes(10 * 28 * 28 - 1))
    path = tmp_path / "images"
    path.write_bytes(gzip.compress(data) if compress else data)
    expect_error(path, "truncated", "7840 bytes", "7839")


def test_truncated_payload_wide_dtype(tmp_path):
    path = tmp_path / "floats"
    path.write_bytes(idx_bytes(0x0E, (3,), bytes(8 * 3 - 4)))
    expect_error(path, "truncated", "24 bytes", "float64")


def test_truncated_header(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 60000))
    expect_error(path, "truncated header", "16 header bytes")


def test_too_short_for_magic(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(b"\x00\x00")
    expect_error(path, "too short")


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_trailing_bytes(tmp_path, compress):
    data = idx_bytes(0x08, (4,), b"\x01\x02\x03\x04") + b"\x00\x00\x00"
    path = tmp_path / "labels"
    path.write_bytes(gzip.compress(data) if compress else data)
    expect_error(path, "3 bytes of trailing data")


def test_truncated_gzip(tmp_path):
    source = tmp_path / "full"
    write_idx(source, sample(np.uint8, (20, 28, 28)))
    data = source.read_bytes()
    path = tmp_path / "cut"
    path.write_bytes(data[: len(data) // 2])
    expect_error(path, "gzip", "truncated")


def test_corrupt_gzip_data(tmp_path):
    source = tmp_path / "full"
    write_idx(source, sample(np.uint8, (20, 28, 28)))
    data = bytearray(source.read_bytes())
    for i in range(20, 60):  # scribble over the deflate stream
        data[i] ^= 0xA5
    path = tmp_path / "scribbled"
    path.write_bytes(bytes(data))
    expect_error(path, "gzip")


def test_gzip_crc_mismatch(tmp_path):
    source = tmp_path / "full"
    write_idx(source, np.arange(100, dtype=np.uint8))
    data = bytearray(source.read_bytes())
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    path = tmp_path / "crc"
    path.write_bytes(bytes(data))
    expect_error(path, "corrupt gzip")


def test_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    expect_error(path, "empty")


def test_empty_gzip(tmp_path):
    path = tmp_path / "empty.gz"
    path.write_bytes(gzip.compress(b""))
    expect_error(path, "empty")


def test_missing_file_and_directory(tmp_path):
    expect_error(tmp_path / "nope", "does not exist")
    with pytest.raises(NntrainError, match="directory"):
        read_idx(tmp_path)


@pytest.mark.parametrize(
    "array, fragment",
    [
        (np.arange(3, dtype=np.int64), "int64"),
        (np.array([True, False]), "bool"),
        (np.array(5, dtype=np.uint8), "1 to 4 dimensions"),
        (np.zeros((1, 1, 1, 1, 1), dtype=np.uint8), "1 to 4 dimensions"),
    ],
)
def test_write_rejects_what_idx_cannot_hold(tmp_path, array, fragment):
    with pytest.raises(NntrainError, match=fragment):
        write_idx(tmp_path / "x", array)
    assert not list(tmp_path.iterdir())


def test_write_accepts_big_endian_input(tmp_path):
    array = np.arange(6, dtype=">i4").reshape(2, 3)
    write_idx(tmp_path / "x", array)
    back = read_idx(tmp_path / "x")
    assert back.dtype == np.int32 and back.dtype.isnative
    np.testing.assert_array_equal(back, array)
