"""The frame format between libcomputecore and the host service (docs/protocol.md).

Pure code: constants, the 48-byte header codec and payload helpers. No I/O, so
both the service and the tests (and any Python peer) share one definition.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

MAGIC = 0x53434841  # b"AHCS" read as a little-endian uint32
VERSION = 1
HEADER = struct.Struct("<IHHIIQQIIII")
HEADER_SIZE = HEADER.size  # 48
MAX_PAYLOAD = 16 * 1024 * 1024

assert HEADER_SIZE == 48


class Kind(enum.IntEnum):
    REQUEST = 1
    REPLY = 2
    EVENT = 3


class Op(enum.IntEnum):
    HELLO = 1
    ENUMERATE = 2
    CREATE_SYSTEM = 3
    OPEN_SYSTEM = 4
    CLOSE_SYSTEM = 5
    START = 6
    SHUTDOWN = 7
    TERMINATE = 8
    CRASH = 9
    PAUSE = 10
    RESUME = 11
    SAVE = 12
    GET_PROPERTIES = 13
    MODIFY = 14
    CREATE_PROCESS = 15
    OPEN_PROCESS = 16
    CLOSE_PROCESS = 17
    TERMINATE_PROCESS = 18
    SIGNAL_PROCESS = 19
    GET_PROCESS_INFO = 20
    GET_PROCESS_PROPERTIES = 21
    MODIFY_PROCESS = 22
    GET_SERVICE_PROPERTIES = 23
    MODIFY_SERVICE_SETTINGS = 24
    CANCEL = 25


# Requests that never get a reply.
NO_REPLY_OPS = frozenset({Op.CLOSE_SYSTEM, Op.CLOSE_PROCESS, Op.CANCEL})


class EventType(enum.IntEnum):
    """HCS_EVENT_TYPE values that travel as the `op` of an event frame."""

    SYSTEM_EXITED = 0x00000001
    SYSTEM_GUEST_CONNECTION_CLOSED = 0x00000006
    PROCESS_EXITED = 0x00010000
    SERVICE_DISCONNECT = 0x02000000  # raised by the C library, never sent


class FdMask(enum.IntFlag):
    """Which stdio descriptors ride on a frame, attached in this bit order."""

    NONE = 0
    STDIN = 1
    STDOUT = 2
    STDERR = 4


class FrameError(ValueError):
    """A header that is not a valid version-1 frame; the connection must close."""


@dataclass(frozen=True, slots=True)
class Header:
    kind: int
    op: int
    request_id: int = 0
    handle: int = 0
    new_handle: int = 0
    arg: int = 0
    hresult: int = 0
    fdmask: int = 0
    length: int = 0
    version: int = VERSION
    magic: int = MAGIC


@dataclass(slots=True)
class Frame:
    header: Header
    payload: bytes = b""
    fds: list[int] = field(default_factory=list)


def pack_header(h: Header) -> bytes:
    return HEADER.pack(
        h.magic,
        h.version,
        h.kind,
        h.op & 0xFFFFFFFF,
        h.request_id & 0xFFFFFFFF,
        h.handle & 0xFFFFFFFFFFFFFFFF,
        h.new_handle & 0xFFFFFFFFFFFFFFFF,
        h.arg & 0xFFFFFFFF,
        h.hresult & 0xFFFFFFFF,
        h.fdmask & 0xFFFFFFFF,
        h.length & 0xFFFFFFFF,
    )


def unpack_header(data: bytes) -> Header:
    """Decode and validate a header (magic, version, kind, length limit)."""
    if len(data) != HEADER_SIZE:
        raise FrameError(f"header must be {HEADER_SIZE} bytes, got {len(data)}")
    (magic, version, kind, op, request_id, handle, new_handle, arg, hresult, fdmask, length) = (
        HEADER.unpack(data)
    )
    if magic != MAGIC:
        raise FrameError(f"bad magic 0x{magic:08x} (expected 0x{MAGIC:08x})")
    if version != VERSION:
        raise FrameError(f"unsupported protocol version {version} (this side speaks {VERSION})")
    if kind not in (Kind.REQUEST, Kind.REPLY, Kind.EVENT):
        raise FrameError(f"unknown frame kind {kind}")
    if length > MAX_PAYLOAD:
        raise FrameError(f"payload of {length} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    if fdmask & ~0x7:
        raise FrameError(f"unknown fdmask bits 0x{fdmask:x}")
    return Header(
        kind=kind,
        op=op,
        request_id=request_id,
        handle=handle,
        new_handle=new_handle,
        arg=arg,
        hresult=hresult,
        fdmask=fdmask,
        length=length,
        version=version,
        magic=magic,
    )


def encode(h: Header, payload: bytes = b"") -> bytes:
    """Header (with `length` set from the payload) followed by the payload."""
    if len(payload) > MAX_PAYLOAD:
        raise FrameError(f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    fixed = Header(
        kind=h.kind,
        op=h.op,
        request_id=h.request_id,
        handle=h.handle,
        new_handle=h.new_handle,
        arg=h.arg,
        hresult=h.hresult,
        fdmask=h.fdmask,
        length=len(payload),
        version=h.version,
        magic=h.magic,
    )
    return pack_header(fixed) + payload


def fd_count(mask: int) -> int:
    return bin(mask & 0x7).count("1")


def split_two(payload: bytes) -> tuple[str, str]:
    """`id \\0 document` -> (id, document); a missing second part is ``""``."""
    first, _, second = payload.partition(b"\0")
    return first.decode("utf-8"), second.decode("utf-8")


def join_two(first: str, second: str | None) -> bytes:
    return first.encode("utf-8") + b"\0" + (second or "").encode("utf-8")
