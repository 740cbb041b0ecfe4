"""Erlang external term format for recorded results (Oban Pro-style ``meta.return``).

A recorded result is ``Base64(term_to_binary(value, [:compressed]))``; an Elixir node reads it
back with ``binary_to_term``. This module writes the bytes OTP 25's ``term_to_binary`` writes and
reads anything OTP 25/26+ writes (``minor_version: 2`` UTF-8 atoms, compressed terms).

Python ↔ Erlang mapping:

================================  ==================================================
Python                            Erlang term
================================  ==================================================
``int``                           integer (SMALL_INTEGER/INTEGER/SMALL_BIG/LARGE_BIG)
``float``                         float (NEW_FLOAT_EXT)
``str``                           binary holding UTF-8 (an Elixir string)
``bytes`` / ``bytearray``         binary
``True`` / ``False`` / ``None``   atoms ``true`` / ``false`` / ``nil``
``Atom("ok")``                    atom ``:ok`` (``erlpack.Atom`` is accepted too)
``list``                          list (STRING_EXT when all items are 0..255, as Erlang)
``tuple``                         tuple
``dict``                          map
``ImproperList(items, tail)``     improper list ``[a, b | tail]``
``BitString(data, bits)``         bitstring whose last byte holds ``bits`` bits
================================  ==================================================

Decoding is the reverse, with one ambiguity: Erlang has one binary type, so a binary that is
valid UTF-8 decodes to ``str`` and any other to ``bytes`` (``b"hi"`` round-trips as ``"hi"``).
A charlist (``'abc'``) decodes to the list of integers it is. Other atoms decode to ``Atom``.
Structs stay maps with an ``Atom("__struct__")`` key.

Encoding is byte-equal to OTP 25's ``term_to_binary`` for every type above, with one exception:
maps of more than 32 keys built in Python. Erlang stores those as a hash trie and writes them in
the order of the VM's internal hash; we write maps of up to 32 keys in sorted term order (as
Erlang) and larger ones in the dict's order. A large map decoded from Erlang keeps Erlang's order,
so it re-encodes byte-equal; one built in Python decodes to the same map in Erlang, only its
bytes differ.

Map keys must be one-to-one. A ``str`` key and an ``Atom`` key of the same name are equal in
Python, so a map holding both (``%{"a" => 1, a: 2}``, or ``1`` and ``1.0``) cannot be
represented: decoding it raises ``TermError``. The other way, keys Python tells apart that are
one Erlang term (``"a"`` and ``b"a"``, ``True`` and ``Atom("true")``, ``None`` and
``Atom("nil")``) would make a map Erlang refuses to read: encoding it raises ``TermError``.

Why not only ``erlpack``: its encoder writes atoms as SMALL_ATOM_EXT, lists never as
STRING_EXT, fails on integers beyond 64 bits and keeps dict order in maps; its decoder rejects
bitstrings and improper lists and returns binaries as ``bytes``. The format is small and fully
specified, so this module implements both directions itself and stays byte-equal to OTP.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any

VERSION = 131
#: Largest recorded value we store, measured on the compressed term before Base64. Results are
#: kept in ``meta`` (jsonb) of a row every fetch rewrites; bigger results belong elsewhere.
RECORD_LIMIT = 32_768

SMALL_INTEGER = 97
INTEGER = 98
FLOAT_STRING = 99
ATOM = 100
SMALL_TUPLE = 104
LARGE_TUPLE = 105
NIL = 106
STRING = 107
LIST = 108
BINARY = 109
SMALL_BIG = 110
LARGE_BIG = 111
SMALL_ATOM = 115
MAP = 116
ATOM_UTF8 = 118
SMALL_ATOM_UTF8 = 119
NEW_FLOAT = 70
BIT_BINARY = 77
COMPRESSED = 80

_ATOM_VALUES: dict[str, Any] = {"true": True, "false": False, "nil": None}


class Atom(str):
    """An Erlang atom, e.g. ``Atom("ok")``; compares equal to its name as a ``str``.

    Erlang atoms hold at most 255 characters: encoding a longer one raises ``TermError``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"


@dataclass(frozen=True, slots=True)
class ImproperList:
    """``[items... | tail]`` where ``tail`` is not a list."""

    items: tuple[Any, ...]
    tail: Any


@dataclass(frozen=True, slots=True)
class BitString:
    """A binary whose last byte holds only ``bits`` (1..8) significant high bits.

    ``data`` must not be empty; the unused low bits of its last byte are written as zeros, and
    ``bits=8`` is a plain binary (Erlang has no other kind of whole-byte bitstring)."""

    data: bytes
    bits: int


class TermError(ValueError):
    """Bytes that are not a term this module can read, or a value it cannot write."""


class RecordTooLarge(ValueError):
    """A recorded value whose encoded term exceeds ``RECORD_LIMIT`` bytes."""

    def __init__(self, size: int, limit: int = RECORD_LIMIT) -> None:
        super().__init__(f"recorded value is {size} bytes encoded, above the {limit} byte limit")
        self.size = size
        self.limit = limit


def _atom_types() -> tuple[type, ...]:
    try:
        import erlpack
    except ImportError:  # pragma: no cover - erlpack is a dependency
        return (Atom,)
    return (Atom, erlpack.Atom)


_ATOM_TYPES = _atom_types()


def _is_atom(value: Any) -> bool:
    return isinstance(value, _ATOM_TYPES)


# ---------------------------------------------------------------------------------- encoding


#: Longest atom Erlang makes (characters, not bytes); binary_to_term refuses a longer one.
MAX_ATOM_CHARACTERS = 255


def _encode_atom(name: str, out: bytearray, minor_version: int) -> None:
    if len(name) > MAX_ATOM_CHARACTERS:
        raise TermError(
            f"atom {name[:20]!r}... is {len(name)} characters; Erlang atoms hold at most "
            f"{MAX_ATOM_CHARACTERS}"
        )
    if minor_version < 2:
        try:
            raw = name.encode("latin-1")
        except UnicodeEncodeError:
            raw = b""
        else:
            # OTP 25 writes every latin-1 atom as ATOM_EXT, whatever its length.
            out += struct.pack(">BH", ATOM, len(raw)) + raw
            return
    raw = name.encode("utf-8")
    if len(raw) < 256:
        out += struct.pack(">BB", SMALL_ATOM_UTF8, len(raw)) + raw
    else:
        out += struct.pack(">BH", ATOM_UTF8, len(raw)) + raw


def _encode_int(value: int, out: bytearray) -> None:
    if 0 <= value <= 255:
        out += struct.pack(">BB", SMALL_INTEGER, value)
    elif -(2**31) <= value < 2**31:
        out += struct.pack(">Bi", INTEGER, value)
    else:
        magnitude = abs(value)
        digits = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "little")
        sign = 1 if value < 0 else 0
        if len(digits) < 256:
            out += struct.pack(">BBB", SMALL_BIG, len(digits), sign)
        else:
            out += struct.pack(">BIB", LARGE_BIG, len(digits), sign)
        out += digits


# Erlang's term order: number < atom < reference < fun < port < pid < tuple < map < nil < list
# < bitstring. Flatmaps (32 keys or fewer) are written with keys in this order.
def order_key(value: Any) -> tuple[Any, ...]:
    """A sort key giving Erlang's term order for the types this module maps."""
    if value is None or isinstance(value, bool):
        return (1, {None: "nil", True: "true", False: "false"}[value])
    if _is_atom(value):
        return (1, str(value))
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, tuple):
        return (6, len(value), tuple(order_key(v) for v in value))
    if isinstance(value, dict):
        keys = sorted((order_key(k) for k in value), key=lambda k: k)
        return (7, len(value), tuple(keys))
    if isinstance(value, list):
        return (8, 0) if not value else (9, tuple(order_key(v) for v in value))
    if isinstance(value, str):
        return (10, value.encode("utf-8"))
    if isinstance(value, bytes | bytearray):
        return (10, bytes(value))
    raise TermError(f"cannot order a map key of type {type(value).__name__}")


def _encode(value: Any, out: bytearray, minor_version: int) -> None:
    if value is None:
        _encode_atom("nil", out, minor_version)
    elif value is True:
        _encode_atom("true", out, minor_version)
    elif value is False:
        _encode_atom("false", out, minor_version)
    elif _is_atom(value):
        _encode_atom(str(value), out, minor_version)
    elif isinstance(value, int):
        _encode_int(value, out)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise TermError("Erlang floats cannot be NaN or infinite")
        out += struct.pack(">Bd", NEW_FLOAT, value)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out += struct.pack(">BI", BINARY, len(raw)) + raw
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        out += struct.pack(">BI", BINARY, len(raw)) + raw
    elif isinstance(value, BitString):
        _encode_bits(value, out)
    elif isinstance(value, tuple):
        if len(value) < 256:
            out += struct.pack(">BB", SMALL_TUPLE, len(value))
        else:
            out += struct.pack(">BI", LARGE_TUPLE, len(value))
        for item in value:
            _encode(item, out, minor_version)
    elif isinstance(value, list):
        _encode_list(value, _PROPER, out, minor_version)
    elif isinstance(value, ImproperList):
        _encode_list(*_flatten(value), out, minor_version)
    elif isinstance(value, dict):
        # Inline, not a helper: one frame per level of nesting keeps deep maps encodable.
        out += struct.pack(">BI", MAP, len(value))
        # Erlang writes flatmaps sorted; larger maps in its own hash order, which a decoded map
        # keeps, so those go out in the dict's order.
        keys = sorted(value, key=order_key) if len(value) <= 32 else list(value)
        # Keys Python tells apart can be one term ("a" and b"a", True and Atom("true")), and
        # binary_to_term refuses a map holding a key twice. One term has one encoding here, so
        # equal bytes are the same key.
        seen: dict[bytes, Any] = {}
        for key in keys:
            start = len(out)
            _encode(key, out, minor_version)
            term = bytes(out[start:])
            if term in seen:
                raise TermError(
                    f"map keys {seen[term]!r} and {key!r} are the same Erlang term; "
                    "an Erlang map holds each key once"
                )
            seen[term] = key
            _encode(value[key], out, minor_version)
    else:
        raise TermError(f"cannot encode {type(value).__name__} as an Erlang term")


def _encode_bits(value: BitString, out: bytearray) -> None:
    data, bits = value.data, value.bits
    if not isinstance(data, bytes | bytearray) or not data or not isinstance(bits, int):
        raise TermError(f"BitString needs non-empty bytes and an int of bits, got {value!r}")
    if not 1 <= bits <= 8:
        raise TermError(f"BitString bits (used bits of the last byte) must be 1..8, got {bits}")
    if bits == 8:  # whole bytes: the term is a binary, and OTP writes it as one
        out += struct.pack(">BI", BINARY, len(data)) + data
        return
    out += struct.pack(">BIB", BIT_BINARY, len(data), bits) + _mask_last(bytes(data), bits)


def _mask_last(data: bytes, bits: int) -> bytes:
    # The unused low bits of the last byte are not part of the term; OTP writes them as zeros.
    return data[:-1] + bytes([data[-1] & (0xFF << (8 - bits)) & 0xFF])


# The tail of a proper list. Not NIL: that is a tag, and also an integer a tail can be.
_PROPER: Any = object()


def _flatten(value: ImproperList) -> tuple[list[Any], Any]:
    # One term, one encoding, as OTP: [1 | [2 | 3]] is written as [1, 2 | 3] and [1 | [2]]
    # as [1, 2].
    items = list(value.items)
    tail = value.tail
    while isinstance(tail, ImproperList):
        items += tail.items
        tail = tail.tail
    if isinstance(tail, list):
        items += tail
        tail = _PROPER
    return items, tail


def _encode_list(items: list[Any], tail: Any, out: bytearray, minor_version: int) -> None:
    if not items:
        if tail is _PROPER:
            out.append(NIL)
        else:
            _encode(tail, out, minor_version)
        return
    if (
        tail is _PROPER
        and len(items) < 65_536
        and all(type(i) is int and 0 <= i <= 255 for i in items)
    ):
        out += struct.pack(">BH", STRING, len(items)) + bytes(items)
        return
    out += struct.pack(">BI", LIST, len(items))
    for item in items:
        _encode(item, out, minor_version)
    if tail is _PROPER:
        out.append(NIL)
    else:
        _encode(tail, out, minor_version)


def encode_term(value: Any, *, compressed: bool = False, minor_version: int = 1) -> bytes:
    """``:erlang.term_to_binary(value)``; ``compressed`` as the ``[:compressed]`` option.

    As Erlang, a compressed term (zlib level 6) is used only when it is smaller than the plain
    one. ``minor_version=2`` writes atoms as UTF-8, the OTP 26 default; 1 is OTP 25's.
    """
    body = bytearray()
    try:
        _encode(value, body, minor_version)
    except RecursionError as error:
        raise TermError(
            "value nested deeper than Python's recursion limit (or containing itself)"
        ) from error
    except UnicodeEncodeError as error:
        # A lone surrogate (a file name from ``os.fsdecode``): no UTF-8, so no Erlang binary.
        near = error.object[max(0, error.start - 20) : error.end + 20]
        raise TermError(f"text with no UTF-8 form ({error.reason}): ...{near!r}...") from error
    if compressed:
        packed = struct.pack(">BI", COMPRESSED, len(body)) + zlib.compress(bytes(body), 6)
        if len(packed) < len(body):
            return bytes([VERSION]) + packed
    return bytes([VERSION]) + bytes(body)


# ---------------------------------------------------------------------------------- decoding


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise TermError("term ends early")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


def _binary(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _atom(name: str) -> Any:
    return _ATOM_VALUES[name] if name in _ATOM_VALUES else Atom(name)


def _decode(r: _Reader) -> Any:
    (tag,) = r.unpack(">B")
    if tag == SMALL_INTEGER:
        return r.unpack(">B")[0]
    if tag == INTEGER:
        return r.unpack(">i")[0]
    if tag in (SMALL_BIG, LARGE_BIG):
        n, sign = r.unpack(">BB" if tag == SMALL_BIG else ">IB")
        magnitude = int.from_bytes(r.take(n), "little")
        return -magnitude if sign else magnitude
    if tag == NEW_FLOAT:
        return r.unpack(">d")[0]
    if tag == FLOAT_STRING:
        return float(r.take(31).rstrip(b"\x00").decode("ascii"))
    if tag in (ATOM, SMALL_ATOM):
        (n,) = r.unpack(">H" if tag == ATOM else ">B")
        return _atom(r.take(n).decode("latin-1"))
    if tag in (ATOM_UTF8, SMALL_ATOM_UTF8):
        (n,) = r.unpack(">H" if tag == ATOM_UTF8 else ">B")
        return _atom(r.take(n).decode("utf-8"))
    if tag == BINARY:
        (n,) = r.unpack(">I")
        return _binary(r.take(n))
    if tag == BIT_BINARY:
        n, bits = r.unpack(">IB")
        if (bits == 0) != (n == 0) or bits > 8:  # what binary_to_term refuses
            raise TermError(f"bitstring of {n} bytes cannot use {bits} bits of its last byte")
        if bits in (0, 8):  # whole bytes: Erlang reads a binary
            return _binary(r.take(n))
        return BitString(_mask_last(r.take(n), bits), bits)
    if tag in (SMALL_TUPLE, LARGE_TUPLE):
        (n,) = r.unpack(">B" if tag == SMALL_TUPLE else ">I")
        return tuple(_decode(r) for _ in range(n))
    if tag == NIL:
        return []
    if tag == STRING:
        (n,) = r.unpack(">H")
        return list(r.take(n))
    if tag == LIST:
        (n,) = r.unpack(">I")
        items = [_decode(r) for _ in range(n)]
        tail = _decode(r)
        if tail == [] and type(tail) is list:
            return items
        return ImproperList(tuple(items), tail)
    if tag == MAP:
        (n,) = r.unpack(">I")
        result: dict[Any, Any] = {}
        for _ in range(n):
            key = _decode(r)
            try:
                known = key in result
            except TypeError as error:  # an unhashable key (a list or map as a key)
                raise TermError(f"map key {key!r} has no Python equivalent") from error
            if known:  # %{"a" => 1, a: 2}, %{1 => 1, 1.0 => 2}: distinct in Erlang only
                raise TermError(f"map keys equal to {key!r} are the same Python key")
            result[key] = _decode(r)
        return result
    raise TermError(f"unsupported term tag {tag}")


def decode_term(data: bytes) -> Any:
    """``:erlang.binary_to_term(data)`` for the types in the module docstring.

    Raises ``TermError`` for malformed bytes, trailing garbage, tags with no mapping (pids,
    references, funs), or a term nested deeper than Python's recursion limit (about 1000).
    """
    data = bytes(data)
    if not data or data[0] != VERSION:
        raise TermError("not an Erlang external term (missing version byte 131)")
    if len(data) > 1 and data[1] == COMPRESSED:
        if len(data) < 6:
            raise TermError("term ends early")
        (size,) = struct.unpack(">I", data[2:6])
        try:
            body = zlib.decompress(data[6:])
        except zlib.error as error:
            raise TermError(f"bad compressed term: {error}") from error
        if len(body) != size:
            raise TermError("compressed term size does not match its header")
    else:
        body = data[1:]
    reader = _Reader(body)
    try:
        value = _decode(reader)
    except RecursionError as error:
        # Erlang reads a term nested to any depth; this decoder recurses once per level.
        raise TermError("term nested deeper than Python's recursion limit") from error
    except (struct.error, UnicodeDecodeError, ValueError) as error:
        if isinstance(error, TermError):
            raise
        raise TermError(str(error)) from error
    if reader.pos != len(body):
        raise TermError("trailing bytes after term")
    return value


def encode_recorded(value: Any, *, limit: int = RECORD_LIMIT) -> str:
    """Base64 of the compressed term, as a recorded result is kept in ``meta``.

    Raises ``RecordTooLarge`` when the term is above ``limit`` bytes.
    """
    data = encode_term(value, compressed=True)
    if len(data) > limit:
        raise RecordTooLarge(len(data), limit)
    return base64.b64encode(data).decode("ascii")


def decode_recorded(text: str) -> Any:
    """The value of a recorded result written by Elixir or by ``encode_recorded``."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise TermError(f"recorded value is not Base64: {error}") from error
    return decode_term(data)
