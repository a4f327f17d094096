"""The 31 real HCS documents (shared/hcs/realdocs, see its INDEX.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aiohcs import schema
from aiohcs.schema import SchemaError

from ._paths import REALDOCS

# number -> model of the document, for every v2 document and the v1 documents that
# have the v2 shape (06-08 process parameters, 09 a properties result).
MODEL: dict[int, type[schema.HcsModel]] = {
    6: schema.ProcessParameters,
    7: schema.ProcessParameters,
    8: schema.ProcessParameters,
    9: schema.Properties,
    **dict.fromkeys([10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20], schema.ComputeSystem),
    **dict.fromkeys([21, 22, 23, 24, 25, 26], schema.ModifySettingRequest),
    27: schema.SystemPropertyQuery,
    28: schema.Properties,  # an array of them
    29: schema.ShutdownOptions,
    30: schema.ResultError,
    31: schema.ResultError,
}
V1_CONTAINER = {1, 2, 3, 4, 5}  # schema v1 (SystemType / LayerFolderPath): no v2 model
ACCEPT = sorted(set(MODEL) - {13, 20, 21, 22, 23})
# Accepted, and nothing unknown to the published schema files (plus known extensions).
STRICT_CLEAN = sorted(set(ACCEPT) - {9, 17})


def _load(n: int) -> Any:
    (path,) = REALDOCS.glob(f"{n:02d}-*.json")
    return json.loads(path.read_text())


def _docs(n: int) -> list[Any]:
    doc = _load(n)
    return doc if n == 28 else [doc]


def test_all_31_are_classified() -> None:
    assert len(list(REALDOCS.glob("*.json"))) == 31
    assert set(MODEL) | V1_CONTAINER == set(range(1, 32))


@pytest.mark.parametrize("n", ACCEPT)
def test_accepted_documents_parse_and_round_trip(n: int) -> None:
    for raw in _docs(n):
        doc = schema.validate(MODEL[n], raw)
        assert json.loads(doc.model_dump_json()) == raw
        assert doc.model_dump(mode="json") == raw


@pytest.mark.parametrize("n", STRICT_CLEAN)
def test_accepted_documents_pass_the_strict_check(n: int) -> None:
    for raw in _docs(n):
        schema.validate(MODEL[n], raw, strict=True)


def test_13_no_container_no_vm_is_rejected() -> None:
    with pytest.raises(SchemaError, match="exactly one of Container, VirtualMachine, HostedSystem"):
        schema.validate(schema.ComputeSystem, _load(13))


@pytest.mark.parametrize(
    ("n", "paths"),
    [
        (
            20,
            {
                "VirtualMachine.Chipset.UEFI",
                "VirtualMachine.ComputeTopology.Memory.Startup",
                "VirtualMachine.Devices.SCSI",
                "VirtualMachine.Devices.VPMem",
                "VirtualMachine.Devices.GuestInterface",
                "VirtualMachine.Devices.VirtualSMBShares",
            },
        ),
        (21, {"ResourceType", "HostedSettings", "ModifySettingRequest"}),
        (22, {"ResourceUri", "ResourceType", "HostedSettings", "ModifySettingRequest"}),
        (23, {"ResourceType", "HostedSettings", "ModifySettingRequest"}),
    ],
)
def test_pre_release_v2_documents_are_rejected_by_the_strict_check(n: int, paths: set[str]) -> None:
    schema.validate(MODEL[n], _load(n))  # leniently they parse (unknown fields are kept)
    with pytest.raises(SchemaError) as info:
        schema.validate(MODEL[n], _load(n), strict=True)
    problems = {p.path: p.message for p in info.value.problems}
    assert set(problems) == paths
    if n == 20:
        assert "did you mean 'Uefi'" in problems["VirtualMachine.Chipset.UEFI"]
        assert "did you mean 'Scsi'" in problems["VirtualMachine.Devices.SCSI"]
    else:
        assert "ResourcePath is required" in problems["ModifySettingRequest"]


def test_17_sandbox_private_fields_are_kept_but_not_strict() -> None:
    doc = schema.validate(schema.ComputeSystem, _load(17))
    assert doc.virtual_machine and doc.virtual_machine.model_extra
    assert "RunInSilo" in doc.virtual_machine.model_extra
    with pytest.raises(SchemaError) as info:
        schema.validate(schema.ComputeSystem, _load(17), strict=True)
    assert "VirtualMachine.RunInSilo" in {p.path for p in info.value.problems}


def test_typed_details_of_real_documents() -> None:
    snp = schema.parse(schema.ComputeSystem, _load(15))
    vm = snp.virtual_machine
    assert vm and vm.security_settings and vm.security_settings.isolation
    assert vm.security_settings.isolation.isolation_type == "SecureNestedPaging"
    assert vm.guest_state and vm.guest_state.guest_state_file_type == "FileMode"
    nic_remove = schema.parse(schema.ModifySettingRequest, _load(25))
    assert nic_remove.request_type is schema.ModifyRequestType.Remove
    assert "settings" in nic_remove.model_fields_set and nic_remove.settings is None
    flex = schema.parse(schema.FlexibleIoDevice, _load(26)["Settings"])
    assert flex.hosting_model is schema.FlexibleIoDeviceHostingModel.ExternalRestricted
    live = [schema.parse(schema.Properties, d) for d in _load(28)]
    assert any(p.state is None for p in live)  # created, never started: no State
    err = schema.parse(schema.ResultError, _load(31))
    assert err.error == -2147024891
