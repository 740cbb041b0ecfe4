"""Erlang terms for recorded results, checked against term_to_binary output captured on OTP 25."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import erlpack
import pytest
from conftest import FIXTURES

from oban_py.job.terms import (
    RECORD_LIMIT,
    Atom,
    BitString,
    ImproperList,
    RecordTooLarge,
    TermError,
    decode_recorded,
    decode_term,
    encode_recorded,
    encode_term,
)

SAMPLES: list[dict[str, Any]] = json.loads((FIXTURES / "terms" / "terms.json").read_text())["terms"]
ENCODINGS = ("hex", "hex_compressed", "hex_minor_version_2", "hex_compressed_minor_version_2")

ISO = Atom("Elixir.Calendar.ISO")

# The Python value each sample's elixir_literal maps to (see the table in oban_py.job.terms).
EXPECTED: dict[int, Any] = {
    1: 0,
    2: 1,
    3: 255,
    4: 256,
    5: 1000,
    6: -1,
    7: 2147483647,
    8: -2147483648,
    9: 2147483648,
    10: -2147483649,
    11: 2**64,
    12: -(2**64),
    13: 2**2048,
    14: 0.0,
    15: 1.5,
    16: -2.25,
    17: 3.141592653589793,
    18: 1.0e100,
    19: 5.0e-324,
    20: "",
    21: "hello",
    22: "héllo wörld",
    23: "日本語",
    24: "emoji 🎉",
    25: b"\x00\x01\x02\xff",
    26: "ab" * 100,
    27: BitString(b"\xa0", 3),
    28: True,
    29: False,
    30: None,
    31: Atom("ok"),
    32: Atom("error"),
    33: Atom("héllo"),
    34: Atom("Elixir.Oban.Job"),
    35: [],
    36: [1, 2, 3],
    37: [1, 2, 300],
    38: [97, 98, 99],
    39: ["a", "b"],
    40: [Atom("a"), 1, "x", 2.5, None],
    41: ImproperList((1,), 2),
    42: (),
    43: (Atom("ok"), 1),
    44: (Atom("error"), "reason"),
    45: (Atom("ok"), {"id": 1}),
    46: tuple(range(1, 257)),
    47: {},
    48: {"a": 1},
    49: {"id": 1, "name": "x", "tags": ["a", "b"], "ok": True, "score": 9.5, "none": None},
    50: {Atom("a"): 1, Atom("b"): "two"},
    51: {1: "one", 2: "two"},
    52: {
        "outer": {"inner": [1, {"deep": True}, (Atom("tuple"), "in", "map")]},
        "list": [[1, 2], []],
    },
    53: {f"k{i}": i for i in range(1, 41)},
    54: {
        Atom("__struct__"): Atom("Elixir.Date"),
        Atom("calendar"): ISO,
        Atom("year"): 2024,
        Atom("month"): 1,
        Atom("day"): 2,
    },
    55: {
        Atom("__struct__"): Atom("Elixir.DateTime"),
        Atom("calendar"): ISO,
        Atom("year"): 2024,
        Atom("month"): 1,
        Atom("day"): 2,
        Atom("hour"): 3,
        Atom("minute"): 4,
        Atom("second"): 5,
        Atom("microsecond"): (0, 0),
        Atom("std_offset"): 0,
        Atom("utc_offset"): 0,
        Atom("time_zone"): "Etc/UTC",
        Atom("zone_abbr"): "UTC",
    },
    56: (Atom("ok"), {"result": 42, "items": ["a", "b"]}),
    57: "done",
    58: [{"id": 1, "status": "ok"}, {"id": 2, "status": "error"}],
}

# Maps above 32 keys are hash tries in Erlang, written in VM hash order (see oban_py.job.terms).
HASH_ORDERED = {53}


def by_index(index: int) -> dict[str, Any]:
    return next(s for s in SAMPLES if s["index"] == index)


def test_fixture_has_58_samples_all_described_here() -> None:
    assert len(SAMPLES) == 58
    assert {s["index"] for s in SAMPLES} == set(EXPECTED)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: f"{s['index']:02d}")
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_captured_encoding_decodes_to_the_described_value(
    sample: dict[str, Any], encoding: str
) -> None:
    value = decode_term(bytes.fromhex(sample[encoding]))
    expected = EXPECTED[sample["index"]]
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: f"{s['index']:02d}")
def test_raw_bin_files_are_the_hex_encodings(sample: dict[str, Any]) -> None:
    folder = FIXTURES / "terms"
    assert (folder / sample["bin_file"]).read_bytes().hex() == sample["hex"]
    assert (folder / sample["compressed_bin_file"]).read_bytes().hex() == sample["hex_compressed"]
    assert (
        decode_term((folder / sample["compressed_bin_file"]).read_bytes())
        == EXPECTED[sample["index"]]
    )


@pytest.mark.parametrize(
    "sample",
    [s for s in SAMPLES if s["index"] not in HASH_ORDERED],
    ids=lambda s: f"{s['index']:02d}",
)
def test_encoding_the_python_value_is_byte_equal_to_otp(sample: dict[str, Any]) -> None:
    value = EXPECTED[sample["index"]]
    assert encode_term(value).hex() == sample["hex"]
    assert encode_term(value, compressed=True).hex() == sample["hex_compressed"]
    assert encode_term(value, minor_version=2).hex() == sample["hex_minor_version_2"]
    assert (
        encode_term(value, compressed=True, minor_version=2).hex()
        == sample["hex_compressed_minor_version_2"]
    )


def test_large_map_built_in_python_decodes_to_the_same_map_but_bytes_may_differ() -> None:
    sample = by_index(53)
    ours = encode_term(EXPECTED[53])
    assert decode_term(ours) == EXPECTED[53]
    assert len(ours) == len(bytes.fromhex(sample["hex"]))


def test_large_map_decoded_from_erlang_reencodes_byte_equal() -> None:
    sample = by_index(53)
    for encoding in ENCODINGS:
        decoded = decode_term(bytes.fromhex(sample[encoding]))
        assert encode_term(decoded).hex() == sample["hex"]
        assert encode_term(decoded, compressed=True).hex() == sample["hex_compressed"]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: f"{s['index']:02d}")
def test_recorded_text_is_base64_of_the_compressed_term(sample: dict[str, Any]) -> None:
    value = EXPECTED[sample["index"]]
    assert decode_recorded(sample["base64_compressed"]) == value
    assert decode_recorded(sample["base64"]) == value
    if sample["index"] not in HASH_ORDERED:
        assert encode_recorded(value) == sample["base64_compressed"]


def test_erlpack_reads_what_we_write() -> None:
    # An independent decoder agrees with ours on everything it supports.
    value = (Atom("ok"), {"items": ["a", "b"], "result": 42, "big": 2**40, "n": None})
    assert erlpack.unpack(encode_term(value)) == (
        "ok",
        {b"items": [b"a", b"b"], b"result": 42, b"big": 2**40, b"n": None},
    )


def test_erlpack_atoms_encode_as_atoms() -> None:
    assert encode_term(erlpack.Atom("ok")) == encode_term(Atom("ok"))


def test_atom_beyond_latin1_uses_utf8_atom_tag() -> None:
    data = encode_term(Atom("日本"))
    assert data[1] == 119  # SMALL_ATOM_UTF8_EXT, as OTP 25 writes such atoms
    assert decode_term(data) == Atom("日本")


def test_invalid_utf8_binary_decodes_to_bytes_and_valid_to_str() -> None:
    assert decode_term(encode_term(b"\xff\xfe")) == b"\xff\xfe"
    assert decode_term(encode_term(b"plain")) == "plain"


def test_bool_items_never_become_a_charlist() -> None:
    assert decode_term(encode_term([True, 1])) == [True, 1]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x84a\x01",
        b"\x83",
        b"\x83m\x00\x00\x00\x05ab",
        b"\x83a\x01\x02",
        b"\x83P\x00\x00\x00\x05garbage",
        b"\x83g",
        bytes.fromhex("835000000107789ccb676060646418e980110075180074"),
    ],
)
def test_malformed_terms_raise_term_error(data: bytes) -> None:
    with pytest.raises(TermError):
        decode_term(data)


def test_unencodable_values_raise_term_error() -> None:
    with pytest.raises(TermError):
        encode_term(object())
    with pytest.raises(TermError):
        encode_term(float("nan"))


def test_recorded_value_above_the_limit_raises_record_too_large() -> None:
    noise = os.urandom(RECORD_LIMIT + 1)  # incompressible
    with pytest.raises(RecordTooLarge) as info:
        encode_recorded(noise)
    assert info.value.size > RECORD_LIMIT
    assert encode_recorded("small", limit=100)


def test_recorded_text_that_is_not_base64_raises_term_error() -> None:
    with pytest.raises(TermError):
        decode_recorded("not base64!")


def test_an_improper_tail_of_106_is_kept() -> None:
    # 106 is also the NIL tag; as a tail it is the integer.
    value = ImproperList((1,), 106)
    assert encode_term(value) == bytes.fromhex("836c00000001610161" + "6a")
    assert decode_term(encode_term(value)) == value
    assert decode_term(encode_term(ImproperList((), 106))) == 106


def test_an_improper_list_is_written_as_otp_writes_the_term() -> None:
    # term_to_binary([1 | [2 | 3]]) is one list of 2 items with tail 3; [1 | [2]] is [1, 2].
    nested = ImproperList((1,), ImproperList((2,), 3))
    assert encode_term(nested) == bytes.fromhex("836c00000002610161026103")
    assert decode_term(encode_term(nested)) == ImproperList((1, 2), 3)
    assert encode_term(ImproperList((1,), [2])) == encode_term([1, 2])
    assert encode_term(ImproperList((), "x")) == encode_term("x")


@pytest.mark.parametrize(
    "bits",
    [BitString(b"\x01", 0), BitString(b"\x01", 9), BitString(b"", 3), BitString(b"", 8)],
    ids=["0-bits", "9-bits", "no-data", "no-data-8"],
)
def test_a_bitstring_needs_data_and_1_to_8_bits_in_its_last_byte(bits: BitString) -> None:
    with pytest.raises(TermError, match="BitString"):
        encode_term(bits)


def test_a_bitstring_is_written_as_otp_writes_the_term() -> None:
    # term_to_binary(<<7::3>>) zeroes the unused low bits; <<65::8>> is the binary "A".
    assert encode_term(BitString(b"\xff", 3)) == bytes.fromhex("834d0000000103e0")
    assert decode_term(bytes.fromhex("834d0000000103ff")) == BitString(b"\xe0", 3)
    assert encode_term(BitString(b"A", 8)) == encode_term(b"A")
    assert decode_term(bytes.fromhex("834d000000010841")) == "A"
    assert decode_term(bytes.fromhex("834d0000000000")) == ""


@pytest.mark.parametrize("data", ["834d0000000003", "834d000000010001", "834d000000010901"])
def test_a_bitstring_erlang_refuses_is_refused(data: str) -> None:
    with pytest.raises(TermError):
        decode_term(bytes.fromhex(data))


@pytest.mark.parametrize("minor_version", [1, 2])
def test_atoms_hold_at_most_255_characters(minor_version: int) -> None:
    # The limit counts characters, not bytes: 255 three-byte characters are fine.
    wide = Atom("✓" * 255)
    assert decode_term(encode_term(wide, minor_version=minor_version)) == wide
    assert decode_term(encode_term(Atom("a" * 255), minor_version=minor_version)) == "a" * 255
    for name in (Atom("a" * 256), Atom("✓" * 256), erlpack.Atom("a" * 256)):
        with pytest.raises(TermError, match="255"):
            encode_term(name, minor_version=minor_version)


# Distinct Python keys that Erlang writes as one term; binary_to_term refuses a map holding a
# key twice (badarg), so such a value must not be recorded.
@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, b"a": 2},
        {True: 1, Atom("true"): 2},
        {None: 1, Atom("nil"): 2},
        {("a",): 1, (b"a",): 2},
        {(Atom("ok"), None): 1, (Atom("ok"), Atom("nil")): 2},
        {**{f"k{i}": i for i in range(40)}, b"k7": 0},  # a hash-ordered (unsorted) map
    ],
    ids=["str-bytes", "true", "nil", "tuple", "nested-nil", "over-32-keys"],
)
def test_map_keys_that_are_one_erlang_term_are_refused(value: dict[Any, Any]) -> None:
    with pytest.raises(TermError, match="same Erlang term"):
        encode_term(value)
    with pytest.raises(TermError, match="same Erlang term"):
        encode_recorded(value)


def test_a_map_with_keys_python_holds_as_one_is_refused_on_decode() -> None:
    # %{"a" => 1, a: 2} and %{1 => 1, 1.0 => 2}: distinct in Erlang, one key in a dict.
    str_and_atom = bytes.fromhex("8374000000026d00000001616101640001616102")
    int_and_float = bytes.fromhex("8374000000026101610146" + "3ff0000000000000" + "6102")
    for data in (str_and_atom, int_and_float):
        with pytest.raises(TermError, match="same Python key"):
            decode_term(data)


def test_a_term_nested_deeper_than_python_recurses_raises_term_error() -> None:
    # What Erlang writes for a list nested 5000 deep ([[[...]]]), plain and as recorded.
    deep = b"\x83" + b"l\x00\x00\x00\x01" * 5000 + b"j" * 5001
    with pytest.raises(TermError, match="nested"):
        decode_term(deep)
    with pytest.raises(TermError, match="nested"):
        decode_recorded(base64.b64encode(deep).decode("ascii"))
    shallow = b"\x83" + b"l\x00\x00\x00\x01" * 200 + b"j" * 201
    expected: list[Any] = []
    for _ in range(200):
        expected = [expected]
    assert decode_term(shallow) == expected


def test_a_value_nested_deeper_than_python_recurses_raises_term_error() -> None:
    deep: list[Any] = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(TermError, match="nested"):
        encode_recorded(deep)


@pytest.mark.parametrize(
    "value",
    ["bad \udcff name", Atom("lone \ud800"), {"k\udc80": 1}, ["x" * 100 + "\ud800"]],
)
def test_text_with_a_lone_surrogate_raises_term_error(value: Any) -> None:
    # No UTF-8 form, so no Erlang binary or atom: the module's own error, not UnicodeEncodeError.
    with pytest.raises(TermError, match="no UTF-8 form"):
        encode_recorded(value)


def test_a_map_nested_800_deep_is_recorded_and_read_back() -> None:
    # Each level of a map costs the encoder one Python frame, as it costs the decoder.
    deep: dict[str, Any] = {}
    for _ in range(800):
        deep = {"a": deep}
    assert decode_recorded(encode_recorded(deep, limit=10**6)) == deep
