"""The frame codec (aiohcs/_wire.py)."""

from __future__ import annotations

import pytest

from aiohcs import _wire
from aiohcs._wire import FdMask, FrameError, Header, Kind, Op


def test_header_is_48_bytes_little_endian() -> None:
    h = Header(kind=Kind.REQUEST, op=Op.START, request_id=7, handle=0x1122334455667788, arg=9)
    raw = _wire.pack_header(h)
    assert len(raw) == 48
    assert raw[:4] == b"AHCS"
    assert raw[4:6] == b"\x01\x00"
    assert raw[6:8] == b"\x01\x00"
    assert raw[8:12] == (6).to_bytes(4, "little")
    assert raw[16:24] == (0x1122334455667788).to_bytes(8, "little")


def test_roundtrip_with_payload() -> None:
    h = Header(
        kind=Kind.REPLY,
        op=Op.CREATE_PROCESS,
        request_id=3,
        arg=42,
        hresult=0x8037010E,
        fdmask=FdMask.STDIN | FdMask.STDERR,
    )
    data = _wire.encode(h, b"hello")
    back = _wire.unpack_header(data[:48])
    assert back.length == 5
    assert back.hresult == 0x8037010E
    assert back.fdmask == 5
    assert _wire.fd_count(back.fdmask) == 2
    assert data[48:] == b"hello"


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda b: b"XXXX" + b[4:], "bad magic"),
        (lambda b: b[:4] + (2).to_bytes(2, "little") + b[6:], "version"),
        (lambda b: b[:6] + (9).to_bytes(2, "little") + b[8:], "kind"),
        (lambda b: b[:44] + (16 * 1024 * 1024 + 1).to_bytes(4, "little"), "exceeds"),
        (lambda b: b[:40] + (8).to_bytes(4, "little") + b[44:], "fdmask"),
    ],
)
def test_rejects_bad_headers(mutate, needle) -> None:  # type: ignore[no-untyped-def]
    good = _wire.pack_header(Header(kind=Kind.REQUEST, op=Op.HELLO, request_id=1))
    with pytest.raises(FrameError, match=needle):
        _wire.unpack_header(mutate(good))


def test_short_header() -> None:
    with pytest.raises(FrameError):
        _wire.unpack_header(b"AHCS")


def test_two_string_payload() -> None:
    assert _wire.split_two(_wire.join_two("id", '{"a":1}')) == ("id", '{"a":1}')
    assert _wire.split_two(b"only") == ("only", "")
    assert _wire.join_two("x", None) == b"x\0"
