"""The host service parses incoming documents with aiohcs.schema and its strictness
rule (docs/host.md, "Validation"): realdocs judged as the service judges them."""

from __future__ import annotations

import pytest

from aiohcs import hresults
from aiohcs.host import documents as d
from aiohcs.host.errors import HcsFault

from ._paths import REALDOCS

# realdoc prefix -> (host model, schema definition, accepted?)
CASES = {
    "10": (d.ComputeSystem, "ComputeSystem", True),
    "11": (d.ComputeSystem, "ComputeSystem", True),
    "13": (d.ComputeSystem, "ComputeSystem", False),
    "14": (d.ComputeSystem, "ComputeSystem", True),
    "15": (d.ComputeSystem, "ComputeSystem", True),
    "16": (d.ComputeSystem, "ComputeSystem", True),
    "17": (d.ComputeSystem, "ComputeSystem", True),  # private fields: kept and logged
    "18": (d.ComputeSystem, "ComputeSystem", True),
    "20": (d.ComputeSystem, "ComputeSystem", False),
    "21": (d.Document, "ModifySettingRequest", False),
    "22": (d.Document, "ModifySettingRequest", False),
    "23": (d.Document, "ModifySettingRequest", False),
    "24": (d.Document, "ModifySettingRequest", True),
    "25": (d.Document, "ModifySettingRequest", True),
    "26": (d.Document, "ModifySettingRequest", True),
    "27": (d.PropertyQuery, "System_PropertyQuery", True),
    "29": (d.ShutdownOptions, "ShutdownOptions", True),
}


@pytest.mark.parametrize("prefix", sorted(CASES))
def test_realdocs_as_the_service_judges_them(prefix: str) -> None:
    model, what, accepted = CASES[prefix]
    (path,) = REALDOCS.glob(f"{prefix}-*.json")
    text = path.read_text()
    if accepted:
        d.parse_document(model, text, what)
        return
    with pytest.raises(HcsFault) as info:
        d.parse_document(model, text, what)
    assert info.value.hresult == hresults.HCS_E_INVALID_JSON


def test_one_error_format() -> None:
    with pytest.raises(HcsFault) as info:
        d.parse_document(
            d.ComputeSystem,
            '{"VirtualMachine": {"ComputeTopology": {"Memory": {"SizeInMB": "lots"}}}}',
            "ComputeSystem",
        )
    assert info.value.message == (
        'VirtualMachine.ComputeTopology.Memory.SizeInMB: expected integer, got "lots"'
    )


def test_host_models_are_the_generated_models() -> None:
    from aiohcs import schema

    for host, generated in [
        (d.ComputeSystem, schema.ComputeSystem),
        (d.ProcessParameters, schema.ProcessParameters),
        (d.ShutdownOptions, schema.ShutdownOptions),
        (d.SignalProcessOptions, schema.SignalProcessOptions),
        (d.ProcessModifyRequest, schema.ProcessModifyRequest),
        (d.SystemQuery, schema.SystemQuery),
        (d.PropertyQuery, schema.SystemPropertyQuery),
    ]:
        assert issubclass(host, generated)
    assert d.ContainerSettings is schema.Container


def test_unknown_fields_are_logged_not_rejected(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="aiohcs.host.documents")
    doc = d.parse_document(d.ProcessParameters, '{"CommandArgs": ["x"], "Later": 1}', "P")
    assert doc.model_extra == {"Later": 1}
    assert "Later: unknown property of ProcessParameters" in caplog.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"Signal": 15}', None),
        ('{"Signal": "TERM"}', None),
        ('{"Signal": "CtrlC"}', None),
        ("{}", "Signal: required"),
        ('{"Signal": true}', "Signal"),
    ],
)
def test_signal_extension(text: str, message: str | None) -> None:
    if message is None:
        d.parse_document(d.SignalProcessOptions, text, "SignalProcessOptions")
        return
    with pytest.raises(HcsFault) as info:
        d.parse_document(d.SignalProcessOptions, text, "SignalProcessOptions")
    assert info.value.hresult == hresults.HCS_E_INVALID_JSON
    assert message in info.value.message
