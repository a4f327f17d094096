"""Review regressions in the host's document checks (pure functions, no service)."""

from __future__ import annotations

import json

import pytest

from aiohcs import hresults
from aiohcs.host.container import oci
from aiohcs.host.documents import ComputeSystem, ProcessParameters, parse_document
from aiohcs.host.errors import HcsFault


def test_deeply_nested_json_is_invalid_json_not_internal_error() -> None:
    with pytest.raises(HcsFault) as info:
        parse_document(ComputeSystem, "[" * 100000 + "]" * 100000, "ComputeSystem")
    assert info.value.hresult == hresults.HCS_E_INVALID_JSON
    assert "nested too deeply" in str(info.value)


@pytest.mark.parametrize(("section", "field"), [("Memory", "SizeInMB"), ("Processor", "Count")])
def test_resource_values_beyond_the_runtime_range_are_rejected(section: str, field: str) -> None:
    text = json.dumps({"Container": {"Storage": {"Path": "/x"}, section: {field: 2**70}}})
    with pytest.raises(HcsFault) as info:
        parse_document(ComputeSystem, text, "ComputeSystem")
    assert info.value.hresult == hresults.HCS_E_INVALID_JSON
    assert f"Container.{section}.{field}" in str(info.value)


def test_relative_working_directory_is_rejected() -> None:
    params = parse_document(
        ProcessParameters, '{"CommandArgs": ["true"], "WorkingDirectory": "rel"}', "P"
    )
    with pytest.raises(HcsFault) as info:
        oci.process_spec(params, oci.User(0, 0))
    assert info.value.hresult == hresults.HCS_E_INVALID_JSON
    assert "WorkingDirectory" in str(info.value)
