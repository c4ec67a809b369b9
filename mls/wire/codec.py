"""TLS presentation language codec as RFC 9420 uses it (§2.1).

* Fixed-width big-endian integers ``uint8`` .. ``uint64``.
* Variable-size vector length headers (§2.1.2): a QUIC-style varint of 1, 2 or
  4 bytes that MUST use the minimal encoding; the prefix ``11`` is invalid.
* ``optional<T>`` (§2.1.1): a presence octet that MUST be 0 or 1.

``Reader`` never reads past its bound and checks every length against the
bytes actually available before slicing, so malformed input raises
``DecodeError`` (naming the field) and never allocates more than the input.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from mls.errors import DecodeError, EncodeError

__all__ = [
    "MAX_VARINT",
    "CachedEncoding",
    "Reader",
    "SignedEncoding",
    "WireStruct",
    "Writer",
    "closed_enum",
    "decode_varint",
    "encode_varint",
    "open_enum",
]

T = TypeVar("T")
S = TypeVar("S", bound="WireStruct")
SE = TypeVar("SE", bound="SignedEncoding")

#: Largest value a §2.1.2 varint (and so a vector length) can carry: 2^30 - 1.
MAX_VARINT = (1 << 30) - 1

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
#: ``struct`` formats of 0 .. 31 big-endian uint16 values (a vector with a one-byte length)
_U16_FORMATS = tuple(f">{count}H" for count in range(32))


def open_enum(enum_cls: Any, value: int) -> int:
    """Return the ``enum_cls`` member for ``value``, or ``value`` itself if unknown.

    Used for code points receivers must tolerate (extension, proposal and
    credential types, protocol versions, §13): unknown values stay plain ints
    so that re-encoding is exact.
    """
    member: int = enum_cls._value2member_map_.get(value, value)
    return member


def closed_enum(enum_cls: Any, value: int, what: str) -> Any:
    """Return the ``enum_cls`` member for ``value``; ``reserved(0)`` and unknown values are malformed.

    Used for enums that select a struct variant (``ContentType``,
    ``SenderType``, ``WireFormat``, ...): the bytes that follow cannot be
    parsed without knowing the variant.
    """
    member = enum_cls._value2member_map_.get(value) if value else None
    if member is None:
        raise DecodeError(f"{what}: invalid value {value}")
    return member


class Reader:
    """Cursor over ``data[pos:end]``; every read checks the bound first."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)
        self.data: bytes = data
        self.pos = pos
        self.end = len(data) if end is None else end

    # -- bounds -----------------------------------------------------------------

    def remaining(self) -> int:
        """Number of unread bytes before the bound."""
        return self.end - self.pos

    def at_end(self) -> bool:
        """True when every byte up to the bound has been read."""
        return self.pos >= self.end

    def finish(self, what: str) -> None:
        """Raise ``DecodeError`` if bytes are left over after ``what``."""
        if self.pos != self.end:
            raise DecodeError(f"{what}: {self.end - self.pos} trailing bytes")

    def _need(self, n: int, what: str) -> int:
        pos = self.pos
        if n > self.end - pos:
            raise DecodeError(f"{what}: truncated (need {n} bytes, {self.end - pos} left)")
        self.pos = pos + n
        return pos

    # -- integers ---------------------------------------------------------------

    def u8(self, what: str) -> int:
        """Read a ``uint8``."""
        return self.data[self._need(1, what)]

    def u16(self, what: str) -> int:
        """Read a big-endian ``uint16``."""
        value: int = _U16.unpack_from(self.data, self._need(2, what))[0]
        return value

    def u32(self, what: str) -> int:
        """Read a big-endian ``uint32``."""
        value: int = _U32.unpack_from(self.data, self._need(4, what))[0]
        return value

    def u64(self, what: str) -> int:
        """Read a big-endian ``uint64``."""
        value: int = _U64.unpack_from(self.data, self._need(8, what))[0]
        return value

    def varint(self, what: str) -> int:
        """Read a §2.1.2 variable-length integer, rejecting non-minimal encodings."""
        pos = self.pos
        if pos >= self.end:
            raise DecodeError(f"{what}: truncated (missing length header)")
        first = self.data[pos]
        prefix = first >> 6
        if prefix == 0:
            self.pos = pos + 1
            return first
        if prefix == 1:
            value: int = _U16.unpack_from(self.data, self._need(2, what))[0] & 0x3FFF
            if value < 0x40:
                raise DecodeError(f"{what}: length {value} not minimally encoded")
            return value
        if prefix == 2:
            value = _U32.unpack_from(self.data, self._need(4, what))[0] & 0x3FFFFFFF
            if value < 0x4000:
                raise DecodeError(f"{what}: length {value} not minimally encoded")
            return value
        raise DecodeError(f"{what}: invalid length prefix 0b11")

    # -- byte strings and vectors -------------------------------------------------

    def fixed(self, n: int, what: str) -> bytes:
        """Read ``opaque what[n]`` (fixed length, no header)."""
        pos = self._need(n, what)
        return self.data[pos : pos + n]

    def opaque(self, what: str) -> bytes:
        """Read ``opaque what<V>``."""
        pos, end = self.pos, self.end
        if pos < end:  # fast path: a one-byte length (keys, KEM outputs, short ciphertexts)
            n = self.data[pos]
            if n < 0x40 and pos + 1 + n <= end:
                self.pos = pos + 1 + n
                return self.data[pos + 1 : pos + 1 + n]
        n = self.varint(what)
        pos = self._need(n, what)
        return self.data[pos : pos + n]

    def sub(self, what: str) -> Reader:
        """Read a ``<V>`` length header and return a reader bounded to that vector."""
        n = self.varint(what)
        pos = self._need(n, what)
        return Reader(self.data, pos, pos + n)

    def vector(self, read_item: Callable[[Reader], T], what: str) -> tuple[T, ...]:
        """Read ``T what<V>``: a length-prefixed run of items, which must fill it exactly."""
        sub = self.sub(what)
        items: list[T] = []
        append = items.append
        while sub.pos < sub.end:
            before = sub.pos
            append(read_item(sub))
            if sub.pos == before:  # an empty item would loop forever
                raise DecodeError(f"{what}: item consumed no bytes")
        return tuple(items)

    def u16_vector(self, what: str) -> tuple[int, ...]:
        """Read ``uint16 what<V>`` (e.g. the lists of Capabilities, §7.2)."""
        pos, end = self.pos, self.end
        if pos < end:  # fast path: a one-byte length (up to 31 values), format string cached
            n = self.data[pos]
            if n < 0x40 and not n & 1 and pos + 1 + n <= end:
                self.pos = pos + 1 + n
                return struct.unpack_from(_U16_FORMATS[n >> 1], self.data, pos + 1)
        n = self.varint(what)
        if n & 1:
            raise DecodeError(f"{what}: length {n} is not a multiple of 2")
        pos = self._need(n, what)
        return struct.unpack_from(f">{n // 2}H", self.data, pos)

    def u32_vector(self, what: str) -> tuple[int, ...]:
        """Read ``uint32 what<V>`` (e.g. ``ParentNode.unmerged_leaves``, §7.1)."""
        n = self.varint(what)
        if n & 3:
            raise DecodeError(f"{what}: length {n} is not a multiple of 4")
        pos = self._need(n, what)
        return struct.unpack_from(f">{n // 4}I", self.data, pos)

    def present(self, what: str) -> bool:
        """Read the §2.1.1 presence octet of an ``optional<T>`` (0 or 1 only)."""
        flag = self.u8(what)
        if flag > 1:
            raise DecodeError(f"{what}: optional presence octet {flag} is not 0 or 1")
        return flag == 1

    def optional(self, read_item: Callable[[Reader], T], what: str) -> T | None:
        """Read ``optional<T>``."""
        return read_item(self) if self.present(what) else None


class Writer:
    """Append-only TLS encoder over a ``bytearray``."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def getvalue(self) -> bytes:
        """The bytes written so far."""
        return bytes(self.buf)

    def u8(self, value: int) -> None:
        """Write a ``uint8``."""
        if not 0 <= value <= 0xFF:
            raise EncodeError(f"uint8 out of range: {value}")
        self.buf.append(value)

    def u16(self, value: int) -> None:
        """Write a big-endian ``uint16``."""
        if not 0 <= value <= 0xFFFF:
            raise EncodeError(f"uint16 out of range: {value}")
        self.buf += _U16.pack(value)

    def u32(self, value: int) -> None:
        """Write a big-endian ``uint32``."""
        if not 0 <= value <= 0xFFFFFFFF:
            raise EncodeError(f"uint32 out of range: {value}")
        self.buf += _U32.pack(value)

    def u64(self, value: int) -> None:
        """Write a big-endian ``uint64``."""
        if not 0 <= value <= 0xFFFFFFFFFFFFFFFF:
            raise EncodeError(f"uint64 out of range: {value}")
        self.buf += _U64.pack(value)

    def varint(self, value: int) -> None:
        """Write a minimal §2.1.2 variable-length integer."""
        self.buf += encode_varint(value)

    def fixed(self, data: bytes, n: int) -> None:
        """Write ``opaque[n]``; ``data`` must be exactly ``n`` bytes."""
        if len(data) != n:
            raise EncodeError(f"fixed-length field needs {n} bytes, got {len(data)}")
        self.buf += data

    def raw(self, data: bytes) -> None:
        """Append already-encoded bytes."""
        self.buf += data

    def opaque(self, data: bytes) -> None:
        """Write ``opaque<V>``."""
        self.buf += encode_varint(len(data))
        self.buf += data

    def begin(self) -> int:
        """Start a ``<V>`` vector whose length is patched in by ``end``."""
        return len(self.buf)

    def end(self, start: int) -> None:
        """Insert the length header of the vector started at ``start``."""
        self.buf[start:start] = encode_varint(len(self.buf) - start)

    def vector(self, items: Iterable[T], write_item: Callable[[Writer, T], None]) -> None:
        """Write ``T items<V>``."""
        start = len(self.buf)
        for item in items:
            write_item(self, item)
        self.end(start)

    def structs(self, items: Iterable[WireStruct]) -> None:
        """Write ``T items<V>`` for ``WireStruct`` items."""
        start = len(self.buf)
        for item in items:
            item.write(self)
        self.end(start)

    def u16_vector(self, items: Iterable[int]) -> None:
        """Write ``uint16 items<V>``."""
        start = len(self.buf)
        for item in items:
            self.u16(item)
        self.end(start)

    def u32_vector(self, items: Iterable[int]) -> None:
        """Write ``uint32 items<V>``."""
        start = len(self.buf)
        for item in items:
            self.u32(item)
        self.end(start)

    def optional_struct(self, value: WireStruct | None) -> None:
        """Write ``optional<T>`` for a ``WireStruct`` value."""
        if value is None:
            self.buf.append(0)
        else:
            self.buf.append(1)
            value.write(self)

    def optional(self, value: T | None, write_item: Callable[[Writer, T], None]) -> None:
        """Write ``optional<T>``."""
        if value is None:
            self.buf.append(0)
        else:
            self.buf.append(1)
            write_item(self, value)


def encode_varint(value: int) -> bytes:
    """Minimal §2.1.2 encoding of ``value`` (0 .. 2^30-1)."""
    if 0 <= value < 0x40:
        return bytes((value,))
    if 0x40 <= value < 0x4000:
        return _U16.pack(0x4000 | value)
    if 0x4000 <= value <= MAX_VARINT:
        return _U32.pack(0x80000000 | value)
    raise EncodeError(f"vector length {value} exceeds 2^30-1 (§2.1.2)")


def decode_varint(data: bytes) -> int:
    """Decode a §2.1.2 varint that must span all of ``data``."""
    reader = Reader(data)
    value = reader.varint("varint")
    reader.finish("varint")
    return value


class WireStruct:
    """Base of every RFC 9420 struct: ``encode``/``decode`` over ``write``/``read``.

    ``decode`` must consume all of its input; trailing bytes are a
    ``DecodeError``. Subclasses implement ``write(writer)`` and the
    classmethod ``read(reader)`` so structs nest.
    """

    __slots__ = ()

    def write(self, writer: Writer) -> None:
        """Append this struct's encoding to ``writer``."""
        raise NotImplementedError

    @classmethod
    def read(cls: type[S], reader: Reader) -> S:
        """Read one struct from ``reader``."""
        raise NotImplementedError

    def encode(self) -> bytes:
        """The TLS encoding of this struct."""
        writer = Writer()
        self.write(writer)
        return bytes(writer.buf)

    @classmethod
    def decode(cls: type[S], data: bytes | bytearray | memoryview) -> S:
        """Decode exactly one struct spanning all of ``data``."""
        reader = Reader(data)
        value = cls.read(reader)
        reader.finish(cls.__name__)
        return value


class CachedEncoding(WireStruct):
    """Base of immutable structs that keep their own encoding once known.

    A struct read from bytes keeps exactly the bytes it was read from; one
    built locally encodes once, on first use. Subclasses are frozen
    dataclasses with a ``_encoding`` field (``init=False, compare=False``)
    and implement ``write_fields`` / ``read_fields`` instead of
    ``write`` / ``read``. Large structs that are encoded again and again
    (LeafNodes in every tree hash, tree encoding and TBS; KeyPackages in
    refs and Commits; UpdatePaths in framing, transcript and membership tag)
    then cost one encoding.
    """

    __slots__ = ()
    _encoding: bytes | None

    def write_fields(self, writer: Writer) -> None:
        """Append the encoding of every field to ``writer``."""
        raise NotImplementedError

    @classmethod
    def read_fields(cls: type[S], reader: Reader) -> S:
        """Read every field from ``reader``."""
        raise NotImplementedError

    def encode(self) -> bytes:
        encoding = self._encoding
        if encoding is None:
            writer = Writer()
            self.write_fields(writer)
            encoding = bytes(writer.buf)
            object.__setattr__(self, "_encoding", encoding)
        return encoding

    def write(self, writer: Writer) -> None:
        writer.buf += self.encode()

    @classmethod
    def read(cls: type[S], reader: Reader) -> S:
        start = reader.pos
        value = cls.read_fields(reader)  # type: ignore[attr-defined]
        object.__setattr__(value, "_encoding", reader.data[start : reader.pos])
        return value  # type: ignore[no-any-return]


class SignedEncoding(CachedEncoding):
    """A ``CachedEncoding`` struct whose encoding is its to-be-signed content
    followed by ``opaque signature<V>`` (LeafNode §7.2, KeyPackage §10).

    Subclasses have a ``signature`` field (last, default ``b""``), write the
    content with ``write_content`` and read it with ``read_content_fields``
    (the other fields, in declaration order).
    """

    __slots__ = ()
    signature: bytes

    def write_content(self, writer: Writer) -> None:
        """Write every field but the signature (the TBS content)."""
        raise NotImplementedError

    @classmethod
    def read_content_fields(cls, reader: Reader) -> tuple[Any, ...]:
        """Read every field but the signature, in declaration order."""
        raise NotImplementedError

    def content_encoding(self) -> bytes:
        """The encoding of every field but the signature (the TBS content)."""
        encoding = self.encode()
        return encoding[: len(encoding) - len(self.signature) - len(encode_varint(len(self.signature)))]

    def write_fields(self, writer: Writer) -> None:
        self.write_content(writer)
        writer.opaque(self.signature)

    @classmethod
    def read_content(cls: type[SE], reader: Reader) -> SE:
        """Read the TBS content; the signature is left empty."""
        return cls(*cls.read_content_fields(reader))  # type: ignore[attr-defined]

    @classmethod
    def read_fields(cls: type[SE], reader: Reader) -> SE:
        content = cls.read_content_fields(reader)  # type: ignore[attr-defined]
        return cls(*content, reader.opaque(f"{cls.__name__}.signature"))
