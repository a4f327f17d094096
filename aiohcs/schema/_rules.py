"""Rules the schema files cannot express, as bases of the generated models.

The generator (``scripts/gen_schema.py``, table ``BASES``) makes a definition
inherit from the matching class here instead of :class:`HcsModel`.
"""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from ._base import HcsModel


class ComputeSystemRules(HcsModel):
    """ComputeSystem: exactly one of ``Container``, ``VirtualMachine``, ``HostedSystem``.

    Every property of the published ComputeSystem is optional, so a document
    with none of the three passes a plain schema check; HCS rejects it with
    ``HCS_E_INVALID_JSON``.
    """

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
