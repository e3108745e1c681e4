"""The compiled PDB-reader and BinaryCIF kernels equal the numpy code they replaced, on random and odd inputs."""

import numpy as np
import pytest

from foldatlas.structure import _pdb_kernels as K


def _numpy_fixed_number(raw, start, stop, decimals):
    """The numpy parser the kernel replaced (foldatlas 0.x, structure/io.py)."""
    if decimals:
        point = stop - decimals - 1
        if not (raw[:, point] == ord(".")).all():
            return None
        digits = np.concatenate([raw[:, start:point], raw[:, point + 1:stop]], axis=1)
    else:
        digits = raw[:, start:stop]
    is_digit = (digits >= ord("0")) & (digits <= ord("9"))
    filled = digits != ord(" ")
    width = digits.shape[1]
    first = np.argmax(filled, axis=1)
    if not (filled.any(axis=1) & (filled.sum(axis=1) == width - first)).all():
        return None
    minus = digits[np.arange(len(digits)), first] == ord("-")
    if (is_digit.sum(axis=1) + minus != width - first).any() or (is_digit.sum(axis=1) == 0).any():
        return None
    value = np.where(is_digit, digits - ord("0"), 0).astype(np.int64) @ (10 ** np.arange(width - 1, -1, -1))
    return np.where(minus, -value, value)


@pytest.mark.parametrize("decimals", [0, 2, 3])
def test_fixed_number_equals_the_numpy_parser(decimals):
    rng = np.random.default_rng(decimals)
    width = 8
    fields = [f"{v:{width}.{decimals}f}" if decimals else f"{int(v):{width}d}"
              for v in rng.normal(0, 300, 200)]
    odd = ["        ", "   -    ", " 1 2.000"[:width], "  -1-2.0"[:width], "--12.000"[:width], "   .500 "[:width],
           "  12.34 "[:width], "     -.5"[:width], "  1a    "[:width], "      -0"]
    for field in fields[:20] + odd:
        block = fields[20:40] + [field]
        raw = np.frombuffer("".join(block).encode(), np.uint8).reshape(len(block), width)
        ok, value = K.fixed_number(raw, 0, width, decimals)
        ref = _numpy_fixed_number(raw, 0, width, decimals)
        assert ok == (ref is not None), field
        if ok:
            assert np.array_equal(value, ref), field


def test_atom_records_lines_models_and_refusals():
    atom = "ATOM      1  CA  ALA A   1      11.104   6.134  -6.504  1.00 20.00           C"
    long = atom + "  EXTRA COLUMNS PAST EIGHTY"
    text = "\r\n".join(["HEADER    TEST", atom, long, "HETATM" + atom[6:], "ENDMDL", atom, ""])
    status, raw = K.atom_records(np.frombuffer(text.encode(), np.uint8))
    assert status == 0 and raw.shape == (3, 80)
    assert raw[0].tobytes().decode() == atom.ljust(80) and raw[1].tobytes().decode() == long[:80]
    assert raw[2, :6].tobytes() == b"HETATM"
    assert K.atom_records(np.frombuffer(b"HEADER\nEND\n", np.uint8))[0] == 1
    assert K.atom_records(np.frombuffer((atom[:70] + "\n").encode(), np.uint8))[0] == 2
    assert K.atom_records(np.zeros(0, np.uint8))[0] == 1


def test_first_appearance_ranks_and_non_ascii():
    values = np.array([b"CA", b"CA", b"N", b"CB", b"N", b"OXT", b"CA"])
    ok, ranks, first = K.first_appearance(values.view(np.uint8).reshape(len(values), 3))
    assert ok and ranks.tolist() == [0, 0, 1, 2, 1, 3, 0] and first.tolist() == [0, 2, 3, 5]
    many = np.array([f"{i:04d}".encode() for i in range(300)] * 2)  # more distinct values than the first table
    ok, ranks, first = K.first_appearance(many.view(np.uint8).reshape(len(many), 4))
    assert ok and ranks.tolist() == list(range(300)) * 2 and first.tolist() == list(range(300))
    assert not K.first_appearance(np.array([[200, 65]], np.uint32))[0]


def test_bcif_column_kernels_equal_numpy():
    from foldatlas.atlas import _codec_kernels as C

    rng = np.random.default_rng(1)
    for values in (rng.integers(-400, 400, 300), rng.integers(0, 3, 300), np.zeros(5, np.int64),
                   np.array([70000, -70000, 5])):
        starts = np.concatenate([[0], np.flatnonzero(values[1:] != values[:-1]) + 1])
        lengths = np.diff(np.concatenate([starts, [len(values)]]))
        assert np.array_equal(C.run_length(values), np.stack([values[starts], lengths], axis=1).ravel())
        for byte_count, bounds in ((1, (127, -128, 255)), (2, (32767, -32768, 65535))):
            packed, unsigned = C.integer_packing(values, byte_count)
            assert unsigned == bool(values.min() >= 0)
            hi, lo = (bounds[2], 0) if unsigned else bounds[:2]
            fill = np.where(values >= 0, hi, lo)
            counts = values // fill + 1
            ref = np.repeat(fill, counts)
            ref[np.cumsum(counts) - 1] = values - (counts - 1) * fill
            assert np.array_equal(packed, ref)
