"""Rules the schema files cannot express, as bases of the generated models.

The generator (``scripts/gen_schema.py``, table ``BASES``) makes a definition
inherit from the matching class here instead of :class:`HcsModel`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, model_validator

from ._base import HcsModel

_KINDS = ("Container", "VirtualMachine", "HostedSystem")


def _one_kind_json_schema(schema: dict[str, Any]) -> None:
    # The same rule in the JSON Schema: exactly one kind present and not null
    # (a null kind counts as absent, as in the model).
    schema["oneOf"] = [
        {"required": [kind], "properties": {kind: {"not": {"type": "null"}}}} for kind in _KINDS
    ]


class ComputeSystemRules(HcsModel):
    """ComputeSystem: exactly one of ``Container``, ``VirtualMachine``, ``HostedSystem``.

    Every property of the published ComputeSystem is optional, so a document
    with none of the three passes a plain schema check; HCS rejects it with
    ``HCS_E_INVALID_JSON``. ``json_schema()`` carries the rule as a ``oneOf``.
    """

    model_config = ConfigDict(json_schema_extra=_one_kind_json_schema)

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Any:
        present = [
            json
            for attr, json in (
                ("container", "Container"),
                ("virtual_machine", "VirtualMachine"),
                ("hosted_system", "HostedSystem"),
            )
            if getattr(self, attr, None) is not None
        ]
        if len(present) != 1:
            got = ", ".join(present) if present else "none"
            raise ValueError(
                f"exactly one of Container, VirtualMachine, HostedSystem is required (got {got})"
            )
        return self
