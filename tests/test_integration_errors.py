"""(d) Bad input through the public API raises the right HcsError subclass with a
message naming the problem, and the service keeps running other systems."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from support import HcsService

import aiohcs
from aiohcs import _bridge

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def bystander(hcs_service: HcsService) -> AsyncIterator[aiohcs.System]:
    """A running system that every bad request must leave intact."""
    system = await aiohcs.create_system(
        f"by-{uuid.uuid4().hex[:8]}", hcs_service.container_config()
    )
    await system.start()
    try:
        yield system
    finally:
        assert hcs_service.alive(), hcs_service.log_tail()
        props = await system.properties()
        assert props.state == "Running", "a bad request disturbed another system"
        proc = await system.create_process({"CommandArgs": ["true"]})
        async with proc:
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        await system.terminate()
        await system.close()
        assert _bridge.pending_operations() == 0


async def test_invalid_json(bystander: aiohcs.System, system_id: str) -> None:
    with pytest.raises(aiohcs.InvalidJson) as info:
        await aiohcs.create_system(system_id, '{"Container": {')
    assert "JSON" in info.value.message
    assert info.value.hresult == 0x8037010D
    assert _bridge.open_handles() == 1  # only the bystander: the failed handle was closed


async def test_wrong_shape(
    bystander: aiohcs.System, hcs_service: HcsService, system_id: str
) -> None:
    with pytest.raises(aiohcs.InvalidJson) as info:
        await aiohcs.create_system(system_id, {"Container": {"Storage": 5}})
    assert "Container.Storage" in info.value.message
    with pytest.raises(aiohcs.InvalidJson) as info:
        await aiohcs.create_system(system_id, {"Owner": "nobody"})  # no Container/VirtualMachine
    assert "Container" in info.value.message
    with pytest.raises(aiohcs.InvalidJson):
        await bystander.create_process({"CommandArgs": "not a list"})


async def test_unknown_id(bystander: aiohcs.System) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(aiohcs.SystemNotFound) as info:
        await aiohcs.open_system(missing)
    assert info.value.hresult == 0x8037010E
    assert missing in str(info.value) or "not found" in info.value.message.lower()


async def test_duplicate_id(bystander: aiohcs.System, hcs_service: HcsService) -> None:
    with pytest.raises(aiohcs.SystemAlreadyExists) as info:
        await aiohcs.create_system(bystander.id, hcs_service.container_config())
    assert bystander.id in info.value.message


async def test_start_twice(bystander: aiohcs.System) -> None:
    with pytest.raises(aiohcs.InvalidState) as info:
        await bystander.start()
    assert info.value.message


async def test_process_in_a_stopped_system(
    hcs_service: HcsService, system_id: str, bystander: aiohcs.System
) -> None:
    async with await aiohcs.create_system(system_id, hcs_service.container_config()) as system:
        await system.start()
        await system.terminate()
        await system.wait()
        with pytest.raises((aiohcs.SystemAlreadyStopped, aiohcs.InvalidState)) as info:
            await system.create_process({"CommandArgs": ["true"]})
        assert info.value.message
        with pytest.raises(aiohcs.SystemAlreadyStopped):
            await system.terminate()


async def test_process_in_a_created_not_started_system(
    hcs_service: HcsService, system_id: str
) -> None:
    async with await aiohcs.create_system(system_id, hcs_service.container_config()) as system:
        with pytest.raises(aiohcs.InvalidState):
            await system.create_process({"CommandArgs": ["true"]})


async def test_rootfs_that_does_not_exist(bystander: aiohcs.System, system_id: str) -> None:
    missing = f"/nonexistent/rootfs-{uuid.uuid4().hex[:8]}"
    config = {
        "SchemaVersion": {"Major": 2, "Minor": 1},
        "Container": {"Storage": {"Layers": [{"Path": missing}]}},
    }
    with pytest.raises(aiohcs.FileNotFound) as info:
        await aiohcs.create_system(system_id, config)
    assert missing in info.value.message


async def test_error_carries_the_result_document(bystander: aiohcs.System) -> None:
    with pytest.raises(aiohcs.HcsError) as info:
        await bystander.start()
    doc = info.value.document
    assert doc is not None and doc.get("Error") is not None
    assert doc["Error"] & 0xFFFFFFFF == info.value.hresult
