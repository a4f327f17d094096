"""Pure translation: Container document -> OCI bundle plan (no processes run)."""

from __future__ import annotations

import errno
import json
import struct
from typing import Any

import pytest

from aiohcs import hresults
from aiohcs.host.container import oci
from aiohcs.host.container.backend import exec_status_fault
from aiohcs.host.documents import (
    ComputeSystem,
    ContainerSettings,
    ProcessParameters,
    parse_document,
)
from aiohcs.host.errors import HcsFault


def container(doc: dict[str, Any]) -> ContainerSettings:
    cs = parse_document(ComputeSystem, json.dumps({"Container": doc}), "ComputeSystem")
    assert cs.container is not None
    return cs.container


def plan(doc: dict, system_id: str = "sys1") -> oci.BundlePlan:  # type: ignore[type-arg]
    c = container(doc)
    oci.validate_container(c, is_dir=lambda p: True)
    return oci.container_bundle(
        system_id,
        c,
        bundle_dir="/state/systems/sys1",
        scratch_dir="/state/scratch",
        init_host_path="/opt/init",
    )


def test_layers_become_overlay_topmost_first() -> None:
    p = plan(
        {
            "Storage": {
                "Layers": [{"Id": "a", "Path": "/l/top"}, {"Id": "b", "Path": "/l/base"}],
                "Path": "/scratch",
            }
        }
    )
    assert p.overlay is not None
    assert p.overlay.lower == ("/l/top", "/l/base")
    assert p.overlay.upper == "/scratch/upper"
    assert p.overlay.work == "/scratch/work"
    assert p.overlay.mount_options() == (
        "lowerdir=/l/top:/l/base,upperdir=/scratch/upper,workdir=/scratch/work"
    )
    assert p.rootfs == "/state/systems/sys1/rootfs"
    assert p.config["root"]["path"] == p.rootfs


def test_layers_without_path_use_state_scratch() -> None:
    p = plan({"Storage": {"Layers": [{"Path": "/l/base"}]}})
    assert p.overlay is not None and p.overlay.upper == "/state/scratch/upper"


def test_single_rootfs_is_used_in_place() -> None:
    p = plan({"Storage": {"Path": "/rootfs"}})
    assert p.overlay is None
    assert p.config["root"] == {"path": "/rootfs", "readonly": False}


def test_init_and_standard_mounts() -> None:
    cfg = plan({"Storage": {"Path": "/rootfs"}}).config
    dests = {m["destination"]: m for m in cfg["mounts"]}
    for d in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"):
        assert d in dests
    init = dests["/.aiohcs/init"]
    assert init["source"] == "/opt/init" and "ro" in init["options"]
    assert cfg["process"]["args"] == ["/.aiohcs/init"]
    kinds = {n["type"] for n in cfg["linux"]["namespaces"]}
    assert kinds == {"pid", "network", "ipc", "uts", "mount"}


def test_mapped_directories_are_binds() -> None:
    cfg = plan(
        {
            "Storage": {"Path": "/rootfs"},
            "MappedDirectories": [
                {"HostPath": "/h/a", "ContainerPath": "/a", "ReadOnly": True},
                {"HostPath": "/h/b", "ContainerPath": "/b"},
            ],
        }
    ).config
    dests = {m["destination"]: m for m in cfg["mounts"]}
    assert dests["/a"]["source"] == "/h/a" and "ro" in dests["/a"]["options"]
    assert dests["/b"]["type"] == "bind" and "ro" not in dests["/b"]["options"]


def test_memory_and_processor() -> None:
    cfg = plan(
        {
            "Storage": {"Path": "/r"},
            "Memory": {"SizeInMB": 256},
            "Processor": {"Count": 2, "Weight": 200},
        }
    ).config
    res = cfg["linux"]["resources"]
    assert res["memory"]["limit"] == 256 * 1024 * 1024
    assert res["cpu"] == {"period": 100000, "quota": 200000, "shares": 2048}


def test_hostname_is_sanitised_id() -> None:
    assert oci.hostname_for("My_Sys.1") == "My-Sys-1"
    assert len(oci.hostname_for("x" * 200)) == 63
    assert oci.hostname_for("___") == "container"
    assert plan({"Storage": {"Path": "/r"}}, "abc").config["hostname"] == "abc"


def test_safe_name() -> None:
    assert oci.safe_name("abc-1.2_3") == "abc-1.2_3"
    odd = oci.safe_name("a/b c")
    assert odd.startswith("h-") and "/" not in odd
    assert oci.safe_name("..") != ".."


@pytest.mark.parametrize(
    ("doc", "hr", "needle"),
    [
        (
            {"Storage": {"Layers": [{"Path": "/missing"}]}},
            hresults.E_PATH_NOT_FOUND,
            "Container.Storage.Layers[0].Path: directory /missing does not exist",
        ),
        (
            {"Storage": {"Path": "/missing"}},
            hresults.E_PATH_NOT_FOUND,
            "Container.Storage.Path: directory /missing does not exist",
        ),
        (
            {"Storage": {"Path": "relative"}},
            hresults.HCS_E_INVALID_JSON,
            "Container.Storage.Path: 'relative' is not an absolute path",
        ),
        ({"Storage": {}}, hresults.HCS_E_INVALID_JSON, "Container.Storage: either Layers or Path"),
        (
            {"Storage": {"Path": "/"}},
            hresults.E_INVALIDARG,
            "Container.Storage.Path: the host's root directory cannot be",
        ),
        (
            {"Storage": {"Layers": [{"Path": "//."}]}},
            hresults.E_INVALIDARG,
            "Container.Storage.Layers[0].Path: the host's root directory cannot be",
        ),
        (
            {
                "Storage": {"Path": "/ok"},
                "MappedDirectories": [{"HostPath": "/missing", "ContainerPath": "/x"}],
            },
            hresults.E_PATH_NOT_FOUND,
            "Container.MappedDirectories[0].HostPath",
        ),
    ],
)
def test_validation_messages(doc, hr, needle) -> None:  # type: ignore[no-untyped-def]
    c = container(doc)
    with pytest.raises(HcsFault) as info:
        oci.validate_container(c, is_dir=lambda p: p == "/ok")
    assert info.value.hresult == hr
    assert needle in info.value.message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"Container": {"Storage": 5}}', "Container.Storage: expected object, got 5"),
        ("{}", "exactly one of Container, VirtualMachine, HostedSystem"),
        ('{"Container": {}}', "Container.Storage: required"),
        (
            '{"Container": {"Storage": {"Layers": [{"Path": 3}]}}}',
            "Container.Storage.Layers[0].Path: expected string, got 3",
        ),
        ("not json", "ComputeSystem: invalid JSON"),
    ],
)
def test_document_shape_errors(text: str, needle: str) -> None:
    with pytest.raises(HcsFault) as info:
        parse_document(ComputeSystem, text, "ComputeSystem")
    assert info.value.hresult == hresults.HCS_E_INVALID_JSON
    assert needle in info.value.message


def test_extra_fields_are_kept() -> None:
    cs = parse_document(
        ComputeSystem, '{"Container": {"Storage": {"Path": "/r"}, "X": 1}, "Y": 2}', "ComputeSystem"
    )
    assert cs.model_extra == {"Y": 2}


PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"


def test_users() -> None:
    assert oci.resolve_user(None, None) == oci.User(0, 0)
    assert oci.resolve_user("nobody", PASSWD) == oci.User(65534, 65534)
    assert oci.resolve_user("1000:5", PASSWD) == oci.User(1000, 5)
    assert oci.resolve_user("65534", PASSWD) == oci.User(65534, 65534)
    with pytest.raises(HcsFault, match="no user 'ghost'"):
        oci.resolve_user("ghost", PASSWD)


def test_process_spec() -> None:
    params = ProcessParameters(
        command_line="sh -c 'echo hi'",
        environment={"A": "1"},
        working_directory="/tmp",
        emulate_console=True,
        console_size=[30, 100],
    )
    spec = oci.process_spec(params, oci.User(0, 0))
    assert spec["args"][-4:] == ["--", "sh", "-c", "echo hi"]  # the console wrapper's
    assert spec["env"][0].startswith("PATH=") and "A=1" in spec["env"]
    assert spec["cwd"] == "/tmp" and spec["terminal"] is True
    assert spec["consoleSize"] == {"height": 30, "width": 100}
    args = oci.process_spec(ProcessParameters(command_args=["a b", "c"]), oci.User(0, 0))["args"]
    assert args == ["a b", "c"]
    with pytest.raises(HcsFault):
        oci.process_spec(ProcessParameters(), oci.User(0, 0))


def test_console_process_waits_for_its_size() -> None:
    """A console process with a ConsoleSize runs under the init's exec wrapper."""
    params = ProcessParameters(
        command_args=["sh", "-c", "stty size"], emulate_console=True, console_size=[24, 80]
    )
    spec = oci.process_spec(params, oci.User(1000, 1000))
    assert spec["args"] == [
        "/.aiohcs/init",
        "--await-winsize",
        "24",
        "80",
        "--status-fd",
        str(oci.EXEC_STATUS_FD),
        "--",
        "sh",
        "-c",
        "stty size",
    ]
    assert spec["consoleSize"] == {"height": 24, "width": 80}
    assert oci.awaits_console_size(params)
    # No size or no console: the args run as given.
    for other in (
        ProcessParameters(command_args=["sh"], emulate_console=True),
        ProcessParameters(command_args=["sh"], console_size=[24, 80]),
    ):
        assert not oci.awaits_console_size(other)
        assert oci.process_spec(other, oci.User(0, 0))["args"] == ["sh"]


@pytest.mark.parametrize(
    ("record", "hr"),
    [
        (b"", None),
        (
            struct.pack("=i", errno.ENOENT) + b'exec "x": executable file not found in $PATH',
            hresults.E_FILE_NOT_FOUND,
        ),
        (
            struct.pack("=i", errno.EACCES) + b'exec "/etc/passwd": Permission denied',
            hresults.E_ACCESSDENIED,
        ),
        (struct.pack("=i", errno.E2BIG) + b"too long", hresults.E_FAIL),
        (b"\x01", hresults.E_FAIL),
    ],
)
def test_exec_status_fault(record: bytes, hr: int | None) -> None:
    fault = exec_status_fault(record)
    if hr is None:
        assert fault is None
    else:
        assert fault is not None and fault.hresult == hresults.to_unsigned(hr)
        if len(record) > 4:
            assert fault.message == record[4:].decode()
