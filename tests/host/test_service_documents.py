"""Incoming documents through the real service: aiohcs.schema models, the shared
error format and the host's strictness rule (docs/host.md, "Validation"), with
real documents (/work/shared/hcs/realdocs)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from shared_material import REALDOCS

from aiohcs import _wire, hresults
from aiohcs._wire import Op

from .conftest import RunningService
from .wire_client import ServiceError, WireClient, connected, unique_id

pytestmark = pytest.mark.timeout(120)


def realdoc(prefix: str) -> dict[str, Any]:
    if not REALDOCS.is_dir():
        pytest.skip(f"{REALDOCS} is not there")
    (path,) = REALDOCS.glob(f"{prefix}-*.json")
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


@pytest.fixture
async def client(service: RunningService) -> AsyncIterator[WireClient]:
    async with connected(service.socket) as c:
        yield c


def new_id() -> str:
    return unique_id("docs")


async def create(client: WireClient, doc: dict[str, Any] | str) -> int:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    h = client.new_handle()
    await client.call(Op.CREATE_SYSTEM, _wire.join_two(new_id(), text), new_handle=h)
    return h


async def fault(coro: Any) -> ServiceError:
    with pytest.raises(ServiceError) as info:
        await coro
    return info.value


def container(rootfs: Path, **extra: Any) -> dict[str, Any]:
    return {"Owner": "tests", "Container": {"Storage": {"Path": str(rootfs)}, **extra}}


async def test_realdoc_13_no_kind_is_invalid_json(client: WireClient) -> None:
    err = await fault(create(client, realdoc("13")))
    assert err.hresult == hresults.HCS_E_INVALID_JSON
    assert err.message == (
        "ComputeSystem: exactly one of Container, VirtualMachine, HostedSystem is required "
        "(got none)"
    )


async def test_realdoc_14_lcow_uvm_is_accepted(client: WireClient, tmp_path: Path) -> None:
    doc = realdoc("14")
    (tmp_path / "vmlinux").write_bytes(b"\0" * 4096)
    (tmp_path / "initrd.img").write_bytes(b"\0" * 4096)
    kd = doc["VirtualMachine"]["Chipset"]["LinuxKernelDirect"]
    kd["KernelFilePath"] = str(tmp_path / "vmlinux")
    kd["InitRdPath"] = str(tmp_path / "initrd.img")
    h = await create(client, doc)
    await client.call(Op.TERMINATE, handle=h)


async def test_realdoc_20_draft_vm_is_invalid_json(client: WireClient) -> None:
    err = await fault(create(client, realdoc("20")))
    assert err.hresult == hresults.HCS_E_INVALID_JSON
    assert (
        "VirtualMachine.Chipset.UEFI: unknown property of Chipset (did you mean 'Uefi'? "
        "property names are case-sensitive)" in err.message
    )
    assert "VirtualMachine.Devices.SCSI: unknown property of Devices (did you mean 'Scsi'?" in (
        err.message
    )
    assert "VirtualMachine.Devices.VPMem: unknown property of Devices (a pre-release v2" in (
        err.message
    )


@pytest.mark.parametrize(
    ("prefix", "needles"),
    [
        ("21", ["ResourceType: unknown property", "HostedSettings: unknown property"]),
        ("22", ["ResourceUri: unknown property", "ResourceType: unknown property"]),
        ("23", ["ResourceType: unknown property", "HostedSettings: unknown property"]),
    ],
)
async def test_realdocs_21_22_23_draft_modify_is_invalid_json(
    client: WireClient, busybox_rootfs: Path, prefix: str, needles: list[str]
) -> None:
    h = await create(client, container(busybox_rootfs))
    await client.call(Op.START, handle=h)
    err = await fault(client.call(Op.MODIFY, json.dumps(realdoc(prefix)), handle=h))
    assert err.hresult == hresults.HCS_E_INVALID_JSON
    for needle in [*needles, "ModifySettingRequest: ResourcePath is required"]:
        assert needle in err.message, err.message
    await client.call(Op.TERMINATE, handle=h)


async def test_realdoc_25_settings_null_passes_validation(
    client: WireClient, busybox_rootfs: Path
) -> None:
    h = await create(client, container(busybox_rootfs))
    await client.call(Op.START, handle=h)
    r = await client.request(Op.MODIFY, json.dumps(realdoc("25")), handle=h)
    # A container has no network adapter to remove; what matters is that the
    # document itself is not the problem.
    assert r.hresult != hresults.HCS_E_INVALID_JSON, r
    await client.call(Op.TERMINATE, handle=h)


async def test_schema_error_format(client: WireClient) -> None:
    doc = {"VirtualMachine": {"ComputeTopology": {"Memory": {"SizeInMB": "lots"}}}}
    err = await fault(create(client, doc))
    assert err.hresult == hresults.HCS_E_INVALID_JSON
    assert (
        err.message
        == 'VirtualMachine.ComputeTopology.Memory.SizeInMB: expected integer, got "lots"'
    )


async def test_wrong_case_rejected_newer_fields_accepted(
    client: WireClient, busybox_rootfs: Path
) -> None:
    err = await fault(create(client, container(busybox_rootfs, mappedDirectories=[])))
    assert err.hresult == hresults.HCS_E_INVALID_JSON
    assert err.message == (
        "Container.mappedDirectories: unknown property of Container "
        "(did you mean 'MappedDirectories'? property names are case-sensitive)"
    )
    # A property newer than the published schema (or private to a host) is kept.
    h = await create(client, {**container(busybox_rootfs, FutureSetting={"X": 1}), "Extra": 2})
    await client.call(Op.TERMINATE, handle=h)


@pytest.mark.parametrize(
    ("op", "payload", "message"),
    [
        (Op.SHUTDOWN, '{"Force": "yes"}', 'Force: expected boolean, got "yes"'),
        (Op.SHUTDOWN, '{"GracePeriodSeconds": -1}', "GracePeriodSeconds: must be >= 0, got -1"),
        (Op.SAVE, '{"SaveStateFilePath": 5}', "SaveStateFilePath: expected string, got 5"),
        (Op.PAUSE, '{"HostedNotification": 3}', "HostedNotification: expected object, got 3"),
        (Op.GET_PROPERTIES, '{"PropertyTypes": "Memory"}', "PropertyTypes: expected array"),
    ],
)
async def test_system_option_documents(
    client: WireClient, busybox_rootfs: Path, op: Op, payload: str, message: str
) -> None:
    h = await create(client, container(busybox_rootfs))
    err = await fault(client.call(op, payload, handle=h))
    assert err.hresult == hresults.HCS_E_INVALID_JSON, err
    assert message in err.message, err.message
    await client.call(Op.TERMINATE, handle=h)
