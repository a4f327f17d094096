"""Event types, fan-out and the overflow policy (drop oldest + count)."""

from __future__ import annotations

import asyncio

import pytest

from aiohcs.events import Event, EventHub, EventType


def ev(t: EventType | int, raw: str | None = None) -> Event:
    return Event.from_raw(int(t), raw)


def test_event_types() -> None:
    assert int(EventType.ProcessExited) == 0x00010000
    assert EventType(0x80000002) is EventType.GroupVmLifecycle
    unknown = EventType(0x1234)
    assert int(unknown) == 0x1234 and not unknown.is_terminal
    assert EventType.SystemExited.is_terminal and EventType.ServiceDisconnect.is_terminal


def test_event_parses_payload() -> None:
    e = ev(EventType.ProcessExited, '{"ProcessId":1,"ExitCode":2}')
    assert e.data == {"ProcessId": 1, "ExitCode": 2}
    assert ev(EventType.ProcessExited, "garbage").data is None
    assert ev(EventType.ServiceDisconnect).raw is None


async def test_fan_out_to_every_consumer() -> None:
    hub = EventHub()
    a, b = hub.subscribe(), hub.subscribe()
    hub.publish(ev(EventType.SystemGuestConnectionClosed))
    hub.publish(ev(EventType.SystemExited, '{"Status":0}'))
    got_a = [e.type async for e in a]
    got_b = [e.type async for e in b]
    expected = [EventType.SystemGuestConnectionClosed, EventType.SystemExited]
    assert got_a == expected and got_b == expected


async def test_overflow_drops_oldest_and_counts() -> None:
    hub = EventHub()
    slow = hub.subscribe(maxsize=3)
    fast = hub.subscribe(maxsize=100)
    for i in range(10):
        hub.publish(ev(EventType.SystemCrashReport, str(i)))
    hub.publish(ev(EventType.SystemExited))
    got = [e async for e in slow]
    assert [e.raw for e in got] == ["8", "9", None]  # newest kept, terminal never lost
    assert got[-1].type is EventType.SystemExited
    assert slow.dropped == 8
    assert len([e async for e in fast]) == 11 and fast.dropped == 0


async def test_consumer_waits_for_events() -> None:
    hub = EventHub()
    stream = hub.subscribe()

    async def consume() -> list[EventType]:
        return [e.type async for e in stream]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    hub.publish(ev(EventType.SystemGuestConnectionClosed))
    await asyncio.sleep(0)
    hub.publish(ev(EventType.ServiceDisconnect))
    assert await asyncio.wait_for(task, 1) == [
        EventType.SystemGuestConnectionClosed,
        EventType.ServiceDisconnect,
    ]


async def test_late_subscriber_sees_terminal_then_end() -> None:
    hub = EventHub()
    hub.publish(ev(EventType.ProcessExited, '{"ExitCode":0}'))
    hub.publish(ev(EventType.SystemGuestConnectionClosed))  # nothing after terminal
    assert [e.type async for e in hub.subscribe()] == [EventType.ProcessExited]
    assert (await hub.wait_terminal()) is not None


async def test_close_ends_streams_and_waiters() -> None:
    hub = EventHub()
    stream = hub.subscribe()
    waiter = asyncio.create_task(hub.wait_terminal())
    await asyncio.sleep(0)
    hub.close()
    assert [e async for e in stream] == []
    assert await waiter is None
    assert [e async for e in hub.subscribe()] == []


async def test_aclose_unsubscribes() -> None:
    hub = EventHub()
    async with hub.subscribe() as stream:
        hub.publish(ev(EventType.SystemCrashReport))
    assert stream not in hub._streams
    hub.publish(ev(EventType.SystemCrashReport))  # no error, nobody listening


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EventHub().subscribe(maxsize=0)
