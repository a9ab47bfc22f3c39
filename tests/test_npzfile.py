"""nntrain.npzfile: every way an .npz / .npy can be damaged or crafted is an NntrainError naming the file and member."""

from __future__ import annotations

import io
import struct
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from nntrain.errors import NntrainError
from nntrain.npzfile import Member, check_members, load_npy, load_npz, npy_header


@contextmanager
def raises(*fragments: str):
    """Expect an NntrainError whose message holds every fragment."""
    with pytest.raises(NntrainError) as info:
        yield info
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npy_with_header(header: bytes, data: bytes = b"\0" * 24) -> bytes:
    """An .npy (version 1.0) whose header text is `header`, padded as numpy pads it."""
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def write_zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, content in members.items():
            z.writestr(name, content)
    return path


def member_data_offset(path: Path, member: str) -> int:
    """Where a member's (compressed) data starts in the zip file."""
    data = path.read_bytes()
    info = zipfile.ZipFile(path).getinfo(member)
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    return info.header_offset + 30 + name_length + extra_length


def test_plain_arrays_round_trip(tmp_path):
    arrays = {
        "f": np.arange(6.0).reshape(2, 3),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
        "big_endian": np.arange(3, dtype=">i4"),
        "text": np.array(["a", "bcd"]),
        "scalar": np.array("config text"),
        "empty": np.zeros((0, 4)),
        "flags": np.array([True, False]),
    }
    for save in (np.savez, np.savez_compressed):
        save(tmp_path / "a.npz", **arrays)
        loaded = load_npz(tmp_path / "a.npz")
        assert loaded.keys() == arrays.keys()
        for key, value in arrays.items():
            np.testing.assert_array_equal(loaded[key], value)
            assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape
        assert loaded["fortran"].flags.f_contiguous
    assert load_npz(tmp_path / "a.npz", members={"f", "text"}).keys() == {"f", "text"}
    np.save(tmp_path / "a.npy", arrays["f"])
    np.testing.assert_array_equal(load_npy(tmp_path / "a.npy"), arrays["f"])
    assert npy_header(tmp_path / "a.npy")[:3] == ((2, 3), False, np.dtype(np.float64))


def test_a_corrupted_deflate_stream(tmp_path):
    path = tmp_path / "c.npz"
    np.savez_compressed(path, X=np.random.default_rng(0).random((50, 4)), y=np.zeros(50))
    data = bytearray(path.read_bytes())
    data[member_data_offset(path, "X.npy")] = 0xFF  # deflate block type 3: reserved, invalid
    path.write_bytes(bytes(data))
    with raises("'", "c.npz", "member 'X.npy'", "zlib.error", "invalid block type"):
        load_npz(path)


def test_flipped_bits_in_stored_data_fail_the_crc(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, w=np.ones(100))
    data = bytearray(path.read_bytes())
    data[member_data_offset(path, "w.npy") + 200] ^= 0x01  # inside the array data, after the header
    path.write_bytes(bytes(data))
    with raises("s.npz", "member 'w.npy'", "CRC"):
        load_npz(path)


def test_a_member_that_is_not_an_npy(tmp_path):
    path = write_zip(tmp_path / "t.npz", {"X.npy": b"some random text, not an array " * 4})
    with raises("t.npz", "member 'X.npy'", "magic string"):
        load_npz(path)
    with raises("member 'notes.txt'", "not an .npy array"):
        load_npz(write_zip(tmp_path / "n.npz", {"notes.txt": b"hello"}))


def test_a_member_that_appears_twice(tmp_path):
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as z, pytest.warns(UserWarning):
        z.writestr("w.npy", npy_bytes(np.ones(2)))
        z.writestr("w.npy", npy_bytes(np.zeros(2)))
    with raises("member 'w.npy'", "twice"):
        load_npz(path)


@pytest.mark.parametrize(
    "header, problem",
    [
        (b"{'descr': '<f8', 'fortran_order': False, 'shape': (3,", "TokenError"),
        (b"garbage ''' \x00", "TokenError"),
        (b"{'descr': 5, 'fortran_order': False, 'shape': (3,)}", "descr"),
        (b"{'descr': '<f8', 'fortran_order': False, 'shape': (2**70,)}", "ValueError"),
        (b"{'descr': '<f8', 'fortran_order': False, 'shape': (-3,)}", "negative size"),
        (b"{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000000,)}", "truncated"),  # no allocation tried
    ],
)
def test_a_garbage_npy_header(tmp_path, header, problem):
    content = npy_with_header(header)
    (tmp_path / "g.npy").write_bytes(content)
    with raises("g.npy", problem):
        load_npy(tmp_path / "g.npy")
    with raises("g.npy", problem):
        npy_header(tmp_path / "g.npy")
    with raises("g.npz", "member 'X.npy'", problem):
        load_npz(write_zip(tmp_path / "g.npz", {"X.npy": content}, zipfile.ZIP_DEFLATED))


@pytest.mark.parametrize(
    "array, problem",
    [
        (np.ones(3, dtype=complex), "complex numbers"),
        (np.zeros(2, dtype=[("a", "<f8"), ("b", "<i4")]), "records"),
        (np.array(["2020-01-01"], dtype="M8[D]"), "dates"),
        (np.array([1], dtype="m8[s]"), "time spans"),
        (np.array([b"ab"]), "byte strings"),
    ],
)
def test_dtypes_nntrain_does_not_write_are_refused(tmp_path, array, problem):
    np.savez(tmp_path / "k.npz", w=array)
    with raises("k.npz", "member 'w.npy'", problem, str(array.dtype)):
        load_npz(tmp_path / "k.npz")
    np.save(tmp_path / "k.npy", array)
    with raises("k.npy", problem):
        load_npy(tmp_path / "k.npy")


class _Tripwire:
    """Unpickling this object creates `path`: proof that something was unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_object_arrays_are_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    np.savez(tmp_path / "o.npz", w=np.array([_Tripwire(marker)], dtype=object))
    with raises("o.npz", "Python objects", "never unpickles"):
        load_npz(tmp_path / "o.npz")
    np.save(tmp_path / "o.npy", np.array([_Tripwire(marker)], dtype=object), allow_pickle=True)
    with raises("o.npy", "Python objects"):
        load_npy(tmp_path / "o.npy")
    assert not marker.exists()


def test_text_that_is_not_unicode(tmp_path):
    np.savez(tmp_path / "s.npz", names=np.array(["fine", "half a pair \ud800"]))
    with raises("s.npz", "member 'names.npy'", "U+D800", "not a Unicode character"):
        load_npz(tmp_path / "s.npz")
    content = bytearray(npy_bytes(np.array(["abc"], dtype=">U3")))
    content[-4:] = b"\x7f\x00\x00\xff"  # a code point far beyond U+10FFFF (numpy: SystemError)
    (tmp_path / "c.npy").write_bytes(bytes(content))
    with raises("c.npy", "U+7F0000FF"):
        load_npy(tmp_path / "c.npy")


def test_truncated_or_padded_data(tmp_path):
    content = npy_bytes(np.ones((4, 3)))
    (tmp_path / "t.npy").write_bytes(content[:-8])
    with raises("t.npy", "truncated", "96 bytes"):
        load_npy(tmp_path / "t.npy")
    (tmp_path / "p.npy").write_bytes(content + b"junk")
    with raises("p.npy", "4 bytes follow"):
        npy_header(tmp_path / "p.npy")


def test_unsupported_version_and_compression(tmp_path):
    content = bytearray(npy_bytes(np.ones(2)))
    content[6] = 9  # version 9.0
    (tmp_path / "v.npy").write_bytes(bytes(content))
    with raises("v.npy", "version 9.0"):
        load_npy(tmp_path / "v.npy")
    path = write_zip(tmp_path / "m.npz", {"w.npy": npy_bytes(np.ones(2))})
    data = bytearray(path.read_bytes())
    central = data.rindex(b"PK\x01\x02")
    data[central + 10 : central + 12] = struct.pack("<H", 99)  # a compression method zipfile does not know
    path.write_bytes(bytes(data))
    with raises("m.npz", "member 'w.npy'", "NotImplementedError"):
        load_npz(path)


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", b"PK\x03\x04truncated"])
def test_not_a_zip_archive(tmp_path, content):
    (tmp_path / "z.npz").write_bytes(content)
    with raises("z.npz", "not an .npz file"):
        load_npz(tmp_path / "z.npz")


def test_missing_files_and_folders(tmp_path):
    with raises("nothing.npz", "does not exist"):
        load_npz(tmp_path / "nothing.npz")
    with raises("is not a file"):
        load_npy(tmp_path)


# --- check_members ------------------------------------------------------------------------------

SPEC = {
    "X": Member("biuf", ("rows", None), required=True),
    "y": Member("biufU", [("rows",), ("rows", None)], required=True, values="finite"),
    "layers.*": Member("f", [(None,), (None, None)]),
    "epoch": Member("iu", (), values="nonnegative"),
    "factor": Member("f", ("features",), values="positive"),
    "names": Member("U", ("features",)),
    "shape": Member("iu", (2,)),
}


def arrays(**changes) -> dict:
    base = {"X": np.zeros((3, 2)), "y": np.zeros(3), "layers.0.weight": np.zeros((2, 4)), "epoch": np.array(2)}
    base.update({"factor": np.ones(2), "names": np.array(["a", "b"]), "shape": np.array([1, 2])})
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def test_check_members_accepts_what_fits_and_returns_named_sizes():
    assert check_members("f.npz", arrays(), SPEC) == {"rows": 3, "features": 2}
    assert check_members("f.npz", arrays(y=np.array(["a", "b", "c"]), extra=np.zeros(1)), SPEC)["rows"] == 3


@pytest.mark.parametrize(
    "changes, fragments",
    [
        ({"y": None}, ["incomplete: it has no 'y'", "it needs 'X' and 'y'"]),
        ({"X": np.zeros(3)}, ["X must be a 2-D numeric array", "got shape (3,)"]),
        ({"X": np.array([["a", "b"]] * 3)}, ["X must be a 2-D numeric array", "<U1"]),
        ({"y": np.zeros(4)}, ["X has 3 rows but y has 4"]),
        ({"y": np.float64(1)}, ["y must be a 1-D or 2-D numeric or text array"]),
        ({"y": np.array([0, np.nan, 1])}, ["y holds nan at index 1", "finite"]),
        ({"layers.0.weight": np.zeros((2, 2), dtype=np.int64)}, ["layers.0.weight must be a 1-D or 2-D float array"]),
        ({"layers.1.bias": np.zeros((1, 1, 1))}, ["layers.1.bias must be"]),
        ({"epoch": np.array(-1)}, ["epoch is -1", "a finite number >= 0"]),
        ({"epoch": np.array(np.nan)}, ["epoch must be an integer scalar"]),
        ({"epoch": np.array([1])}, ["epoch must be an integer scalar"]),
        ({"factor": np.array([1.0, 0.0])}, ["factor holds 0.0 at index 1", "> 0"]),
        ({"factor": np.ones(3)}, ["factor has 3 features but names has 2"]),
        ({"shape": np.array([1, 2, 3])}, ["shape must be a 1-D integer array of shape (2,)"]),
    ],
)
def test_check_members_refusals(changes, fragments):
    with raises("'f.npz'", *fragments):
        check_members("f.npz", arrays(**changes), SPEC)


def test_check_members_closed_and_prebound_sizes(tmp_path):
    with raises("'f.npz' has a member 'stray'", "not one nntrain writes"):
        check_members("f.npz", arrays(stray=np.zeros(1)), SPEC, closed=True)
    with raises("'X.npy' has 5 rows but X has 3"):
        check_members("f.npz", arrays(), SPEC, sizes={"rows": (5, "'X.npy'")})
    np.save(tmp_path / "X.npy", np.zeros((2, 3, 4)))
    with raises("X must be a 2-D numeric array", "(2, 3, 4)"):  # a header is checked without reading the data
        check_members(tmp_path / "X.npy", {"X": npy_header(tmp_path / "X.npy")}, {"X": SPEC["X"]})
