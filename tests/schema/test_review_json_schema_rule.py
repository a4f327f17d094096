"""Review regression: json_schema(ComputeSystem) carries the "exactly one kind" rule.

The model rejects a ComputeSystem with none or two of Container, VirtualMachine,
HostedSystem; the exported JSON Schema accepted both, so a document checked with
jsonschema passed and was then refused by the models and the host.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from aiohcs import schema

CASES: list[tuple[dict[str, Any], bool]] = [
    ({"VirtualMachine": {}}, True),
    ({"Container": {}}, True),
    ({"HostedSystem": {"SchemaVersion": {"Major": 2, "Minor": 1}}}, True),
    ({"Container": None, "VirtualMachine": {}}, True),  # null is absent, as in the model
    ({}, False),
    ({"Owner": "me"}, False),
    ({"VirtualMachine": {}, "Container": {}}, False),
    ({"VirtualMachine": None}, False),
]


@pytest.mark.parametrize(("doc", "ok"), CASES)
def test_json_schema_agrees_with_the_model(doc: dict[str, Any], ok: bool) -> None:
    model_ok = True
    try:
        schema.ComputeSystem.model_validate(doc)
    except Exception:
        model_ok = False
    assert model_ok == ok
    for js in (schema.json_schema(schema.ComputeSystem), schema.json_schema()):
        if "properties" not in js:  # the all-models form: check against its ComputeSystem
            js = {**js, "$ref": "#/$defs/ComputeSystem"}
        validator = jsonschema.validators.validator_for(js)(js)
        assert validator.is_valid(doc) == ok, (doc, [e.message for e in validator.iter_errors(doc)])
