"""The byte format of one spool record, and a reader that survives damage.

    offset size  field
    0      4     MAGIC = ff 41 53 50 ("\\xffASP")
    4      4     body length N, big-endian
    8      4     CRC-32 of bytes 4..8 (the length) followed by the body
    12     N     body: u8 topic length T | topic | u32 key length K | key | value

0xFF never occurs in UTF-8, and keys (unit ids) and values (JSON) are UTF-8, so a magic
marker inside a body is impossible except in the binary length fields. After a damaged
record (torn write, bit rot, bad length) the reader skips ahead to the next magic marker
whose record checks out, so one bad record never hides the ones after it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

MAGIC = b"\xffASP"
HEADER = struct.Struct(">4sII")
HEADER_SIZE = HEADER.size
MAX_BODY_BYTES = 64 * 1_048_576
_TOPIC_LEN = struct.Struct(">B")
_KEY_LEN = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One message as it will be produced: topic, key and value bytes."""

    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Damage:
    """A stretch of bytes that held no valid record; `torn` when it runs to the end."""

    offset: int
    length: int
    torn: bool


def encode_record(entry: SpoolEntry) -> bytes:
    topic = entry.topic.encode("ascii")
    body = b"".join((_TOPIC_LEN.pack(len(topic)), topic, _KEY_LEN.pack(len(entry.key)), entry.key, entry.value))
    length = struct.pack(">I", len(body))
    return MAGIC + length + struct.pack(">I", zlib.crc32(body, zlib.crc32(length))) + body


def _decode_body(body: bytes) -> SpoolEntry | None:
    topic_end = 1 + body[0] if body else 0
    if not body or topic_end + 4 > len(body):
        return None
    (key_length,) = _KEY_LEN.unpack_from(body, topic_end)
    key_end = topic_end + 4 + key_length
    if key_end > len(body):
        return None
    try:
        topic = body[1:topic_end].decode("ascii")
    except UnicodeDecodeError:
        return None
    return SpoolEntry(topic, body[topic_end + 4 : key_end], body[key_end:])


def _record_at(data: bytes, offset: int) -> tuple[SpoolEntry, int] | None:
    """The record starting exactly at `offset` and the offset after it, if it is intact."""
    if offset + HEADER_SIZE > len(data):
        return None
    magic, length, crc = HEADER.unpack_from(data, offset)
    end = offset + HEADER_SIZE + length
    if magic != MAGIC or length > MAX_BODY_BYTES or end > len(data):
        return None
    body = data[offset + HEADER_SIZE : end]
    if zlib.crc32(body, zlib.crc32(data[offset + 4 : offset + 8])) != crc:
        return None
    entry = _decode_body(body)
    return (entry, end) if entry is not None else None


def _next_intact(data: bytes, start: int) -> int:
    """Offset of the next intact record at or after `start`, or len(data) when none."""
    position = data.find(MAGIC, start)
    while position != -1:
        if _record_at(data, position) is not None:
            return position
        position = data.find(MAGIC, position + 1)
    return len(data)


def iter_records(data: bytes, offset: int = 0) -> Iterator[tuple[SpoolEntry | Damage, int]]:
    """Every record (or damaged stretch) from `offset`, each with the offset just after it."""
    while offset < len(data):
        found = _record_at(data, offset)
        if found is not None:
            entry, offset = found
            yield entry, offset
            continue
        resume = _next_intact(data, offset + 1)
        yield Damage(offset, resume - offset, torn=resume == len(data)), resume
        offset = resume
