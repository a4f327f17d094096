"""The generated models: coverage of the schema files, names, round trips, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aiohcs import schema
from aiohcs.schema import SchemaError, _models

from ._paths import DATA, SAMPLES

ROOT = Path(__file__).resolve().parents[2]


def _defs(name: str) -> dict[str, Any]:
    return dict(json.loads((DATA / f"hcs-schema-{name}.json").read_text())["definitions"])


def test_every_definition_of_every_file_has_a_class() -> None:
    newest = _defs("win11-21h2")
    assert len(newest) == 243
    for name in ("win10-1809", "win10-1903", "win10-2004", "win10-2104", "win11-21h2"):
        for definition, d in _defs(name).items():
            cls = schema.DEFINITIONS[definition]
            if "enum" in d:
                assert issubclass(cls, schema.HcsEnum)
                assert {m.value for m in cls} >= set(d["enum"]), definition
            elif definition not in schema.RENAMED:
                assert issubclass(cls, schema.HcsModel)
                names = {schema.json_name(cls, a) for a in cls.model_fields}
                assert names >= set(d.get("properties", {})), (name, definition)


def test_fields_of_older_files_are_kept() -> None:
    # Devices.KernelIntegration and Properties.ICHeartbeatStatus exist only before 2104,
    # VirtualMachine_Processor.EnablePerfmonArchPmu only in 2104, SystemType "Host" only
    # before 2104; 1809's Memory_2 is 21H2's VirtualMachine_Memory.
    dev = schema.Devices.model_validate({"KernelIntegration": {}})
    assert dev.kernel_integration == schema.KernelIntegration()
    props = schema.Properties.model_validate({"ICHeartbeatStatus": {}, "SystemType": "Host"})
    assert props.system_type is schema.SystemType.Host
    assert schema.VirtualMachineProcessor(enable_perfmon_arch_pmu=True).to_json() == (
        '{"EnablePerfmonArchPmu":true}'
    )
    assert schema.DEFINITIONS["Memory_2"] is schema.VirtualMachineMemory
    assert schema.strict_problems(props) == []


def test_names_snake_case_in_python_pascal_case_in_json() -> None:
    mem = schema.VirtualMachineMemory(size_in_mb=1024, high_mmio_gap_in_mb=16)
    assert json.loads(mem.to_json()) == {"SizeInMB": 1024, "HighMmioGapInMB": 16}
    stats = schema.ProcessDetails.model_validate({"UserTime100ns": 5, "KernelTime100ns": 6})
    assert (stats.user_time100ns, stats.kernel_time100ns) == (5, 6)
    assert schema.VirtualMachineProcessor(maximum_frequency_mhz=5).to_json() == (
        '{"MaximumFrequencyMHz":5}'
    )
    # ContainersDef_* use lower-case JSON names where other definitions use PascalCase.
    assert schema.CpuGroup(id="x").to_json() == '{"Id":"x"}'
    assert schema.ContainersDefContainer.model_validate({"namespace": {}}).namespace is not None
    assert schema.Layer.model_validate({"Id": "a", "Path": "/p"}).id == "a"
    assert schema.Layer(id="a").model_dump() == {"Id": "a"}


def test_only_set_fields_are_written_and_explicit_null_is_kept() -> None:
    req = schema.ModifySettingRequest.model_validate(
        {"ResourcePath": "VirtualMachine/Devices/NetworkAdapters/x", "Settings": None}
    )
    assert (
        req.to_json()
        == '{"ResourcePath":"VirtualMachine/Devices/NetworkAdapters/x","Settings":null}'
    )
    assert schema.Statistics().to_json() == "{}"
    assert schema.Version(major=2, minor=0).model_dump_json() == '{"Major":2,"Minor":0}'


def test_unknown_fields_and_enum_values_survive() -> None:
    doc = {
        "Id": "x",
        "State": "Hibernating",
        "FutureField": {"Nested": [1, 2]},
        "ProcessList": [{"ProcessId": 1, "Extra": True}],
    }
    props = schema.Properties.model_validate(doc)
    assert props.state == "Hibernating"
    assert isinstance(props.state, schema.State) and not props.state.is_known
    assert schema.State("Running").is_known and props.state != schema.State.Running
    assert json.loads(props.to_json()) == doc
    assert props.model_extra == {"FutureField": {"Nested": [1, 2]}}


def test_scalars_are_strict() -> None:
    for bad in ({"Count": "2"}, {"Count": 2.0}, {"Count": True}, {"Count": -1}):
        with pytest.raises(SchemaError):
            schema.validate(schema.VirtualMachineProcessor, bad)
    with pytest.raises(SchemaError, match=r"^StopOnReset: expected boolean, got 1$"):
        schema.validate(schema.VirtualMachine, {"StopOnReset": 1})


@pytest.mark.parametrize(
    ("model", "doc", "message"),
    [
        (
            schema.ComputeSystem,
            '{"VirtualMachine":{"ComputeTopology":{"Memory":{"SizeInMB":"lots"}}}}',
            'VirtualMachine.ComputeTopology.Memory.SizeInMB: expected integer, got "lots"',
        ),
        (
            schema.ComputeSystem,
            {"Container": {"Storage": {"Layers": [{"Path": "/a"}, {"Path": 5}]}}},
            "Container.Storage.Layers[1].Path: expected string, got 5",
        ),
        (
            schema.ComputeSystem,
            {"VirtualMachine": {"Devices": {"Scsi": {"Primary disk": {"Attachments": []}}}}},
            'VirtualMachine.Devices.Scsi["Primary disk"].Attachments: '
            "expected object, got an array",
        ),
        (
            schema.ProcessParameters,
            {"ConsoleSize": [25, 70000]},
            "ConsoleSize[1]: must be <= 65535, got 70000",
        ),
        (
            schema.Properties,
            {"State": 3},
            "State: Input should be a string (one of 'Created', 'Running', 'Paused', 'Stopped', "
            "'SavedAsTemplate', 'Unknown'), got 3",
        ),
        (schema.ComputeSystem, "{", "ComputeSystem: invalid JSON: EOF while parsing an object"),
        (
            schema.ComputeSystem,
            {"Owner": "x"},
            "ComputeSystem: exactly one of Container, VirtualMachine, HostedSystem is required "
            "(got none)",
        ),
    ],
)
def test_errors_name_the_json_path(model: type[schema.HcsModel], doc: Any, message: str) -> None:
    with pytest.raises(SchemaError) as info:
        schema.validate(model, doc)
    assert message in str(info.value)
    assert all(p.path and p.message for p in info.value.problems)


def test_compute_system_needs_exactly_one_kind() -> None:
    with pytest.raises(SchemaError, match="got Container, VirtualMachine"):
        schema.validate(schema.ComputeSystem, {"Container": {}, "VirtualMachine": {}})
    hosted = {"HostingSystemId": "uvm", "HostedSystem": {"SchemaVersion": {"Major": 2}}}
    assert schema.validate(schema.ComputeSystem, hosted).hosting_system_id == "uvm"


def test_strict_reports_unknown_and_wrong_case() -> None:
    doc = {"VirtualMachine": {"Chipset": {"UEFI": {}}, "Devices": {"Scsi": {}}, "Extra": 1}}
    assert schema.validate(schema.ComputeSystem, doc).virtual_machine is not None
    with pytest.raises(SchemaError) as info:
        schema.validate(schema.ComputeSystem, doc, strict=True)
    paths = {p.path: p.message for p in info.value.problems}
    assert set(paths) == {"VirtualMachine.Chipset.UEFI", "VirtualMachine.Extra"}
    assert "did you mean 'Uefi'" in paths["VirtualMachine.Chipset.UEFI"]
    with pytest.raises(SchemaError, match=r"^State: unknown value 'Hibernating' of State"):
        schema.validate(schema.Properties, {"State": "Hibernating"}, strict=True)


def test_samples_round_trip() -> None:
    kinds: dict[str, type[schema.HcsModel]] = {
        "vm-uefi-scsi-vhdx.json": schema.ComputeSystem,
        "vm-empty-uefi.json": schema.ComputeSystem,
        "query-memory.json": schema.SystemPropertyQuery,
        "modify-memory-size.json": schema.ModifySettingRequest,
        "pause-options-suspend.json": schema.PauseOptions,
        "save-options-tofile.json": schema.SaveOptions,
        "service-query-memory.json": schema.ServicePropertyQuery,
        "service-modify-cpugroup-create.json": schema.ModificationRequest,
    }
    assert set(kinds) == {p.name for p in SAMPLES.glob("*.json")}
    for name, model in kinds.items():
        text = (SAMPLES / name).read_text()
        doc = schema.validate(model, text)
        assert json.loads(doc.model_dump_json()) == json.loads(text), name
        assert model.model_validate_json(doc.model_dump_json()) == doc


def test_samples_are_typed_below_the_top() -> None:
    vm = schema.parse(schema.ComputeSystem, (SAMPLES / "vm-uefi-scsi-vhdx.json").read_text())
    assert vm.virtual_machine and vm.virtual_machine.devices and vm.virtual_machine.devices.scsi
    attachment = vm.virtual_machine.devices.scsi["Primary disk"].attachments
    assert attachment and attachment["0"].type is schema.AttachmentType.VirtualDisk
    memory = vm.virtual_machine.compute_topology and vm.virtual_machine.compute_topology.memory
    assert memory and memory.backing is schema.MemoryBackingType.Virtual  # known extension
    assert schema.strict_problems(vm) == []
    # Not in GetPropertyType (only in 1809's PropertyType): kept, and strict says so.
    query = schema.parse(
        schema.ServicePropertyQuery, (SAMPLES / "service-query-memory.json").read_text()
    )
    assert [str(p) for p in schema.strict_problems(query)] == [
        "PropertyTypes[0]: unknown value 'Memory' of GetPropertyType (expected one of 'Basic', "
        "'CpuGroup', 'ProcessorTopology', 'ContainerCredentialGuard', 'QoSCapabilities')"
    ]


def test_result_documents_are_typed() -> None:
    err = schema.parse(
        schema.ResultError,
        '{"Error":-2147217400,"ErrorMessage":"","Attribution":[{"OperationFailure":{"Detail":"Construct"}}]}',
    )
    assert err.attribution and err.attribution[0].operation_failure
    assert err.attribution[0].operation_failure.detail is schema.OperationFailureDetail.Construct
    status = schema.parse(schema.SystemExitStatus, '{"Status":0,"ExitType":"GracefulExit"}')
    assert status.exit_type is schema.NotificationType.GracefulExit
    assert schema.parse(schema.ProcessStatus, '{"ExitCode":3,"Exited":true}').exit_code == 3
    sp = schema.parse(schema.ServiceProperties, '{"Properties":[{"SupportedSchemaVersions":[]}]}')
    assert sp.properties == [{"SupportedSchemaVersions": []}]


def test_builders_return_ordinary_models() -> None:
    c = schema.container_from_rootfs("/srv/rootfs", owner="me", mounts={"/h": "/c"}, memory_mb=64)
    assert json.loads(c.to_json()) == {
        "Owner": "me",
        "SchemaVersion": {"Major": 2, "Minor": 1},
        "Container": {
            "Storage": {"Path": "/srv/rootfs"},
            "MappedDirectories": [{"HostPath": "/h", "ContainerPath": "/c"}],
            "Memory": {"SizeInMB": 64},
        },
        "ShouldTerminateOnLastHandleClosed": True,
    }
    layered = schema.container_from_layers(["/l/top", "/l/base"], scratch="/s", cpu_count=2)
    assert json.loads(layered.to_json())["Container"] == {
        "Storage": {"Layers": [{"Path": "/l/top"}, {"Path": "/l/base"}], "Path": "/s"},
        "Processor": {"Count": 2},
    }
    with pytest.raises(ValueError):
        schema.container_from_layers([])
    vm = schema.linux_vm("/boot/vmlinuz", initrd="/boot/initrd", cmdline="console=ttyS0")
    assert json.loads(vm.to_json())["VirtualMachine"]["Chipset"] == {
        "LinuxKernelDirect": {
            "KernelFilePath": "/boot/vmlinuz",
            "InitRdPath": "/boot/initrd",
            "KernelCmdLine": "console=ttyS0",
        }
    }
    assert vm.schema_version == schema.Version(major=2, minor=2)
    uefi = schema.uefi_vm("c:\\vm.vhdx", memory_mb=2048, cpu_count=2, owner="Sample")
    sample = json.loads((SAMPLES / "vm-uefi-scsi-vhdx.json").read_text())
    del sample["VirtualMachine"]["ComputeTopology"]["Memory"]["Backing"]
    sample["VirtualMachine"]["Devices"]["Scsi"]["Primary disk"]["Attachments"]["0"]["Path"] = (
        "c:\\vm.vhdx"
    )
    assert json.loads(uefi.to_json()) == sample
    for doc in (c, layered, vm, uefi):
        assert schema.validate(schema.ComputeSystem, doc.to_json(), strict=True) == doc


def test_json_schema_export() -> None:
    one = schema.json_schema(schema.ComputeSystem)
    assert "VirtualMachine" in one["properties"]
    everything = schema.json_schema()
    assert len(everything["$defs"]) == len(schema.all_models())
    mem = everything["$defs"]["VirtualMachineMemory"]["properties"]["SizeInMB"]
    int_schema = next(s for s in mem["anyOf"] if s.get("type") == "integer")
    assert int_schema["minimum"] == 0
    json.dumps(everything)


def test_generated_module_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_schema.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _models.__doc__ and "GENERATED" in (ROOT / "aiohcs/schema/_models.py").read_text()[:100]
