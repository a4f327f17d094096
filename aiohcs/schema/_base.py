"""Base classes and scalar types of the generated schema models.

* :class:`HcsModel`: PascalCase JSON names (``ALIASES`` of the generated module
  for the irregular ones), construct by attribute name or JSON name, unknown
  fields kept and written back, ``model_dump``/``model_dump_json`` default to
  ``by_alias=True, exclude_unset=True`` so output holds what was set, explicit
  ``null`` included.  Scalars are strict (``"5"`` is not an integer, ``1`` is
  not a boolean), as HCS is.
* :class:`HcsEnum`: ``str`` enums; a value newer than the schema becomes a
  pseudo-member that compares equal to its string and is written back as is.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

from annotated_types import Ge, Le
from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.alias_generators import to_pascal
from pydantic_core import PydanticCustomError, core_schema

if TYPE_CHECKING:
    from pydantic.json_schema import JsonSchemaValue

UInt8: TypeAlias = Annotated[int, Ge(0), Le(0xFF)]
UInt16: TypeAlias = Annotated[int, Ge(0), Le(0xFFFF)]
UInt32: TypeAlias = Annotated[int, Ge(0), Le(0xFFFF_FFFF)]
UInt64: TypeAlias = Annotated[int, Ge(0), Le(0xFFFF_FFFF_FFFF_FFFF)]
Int32: TypeAlias = Annotated[int, Ge(-(2**31)), Le(2**31 - 1)]
Int64: TypeAlias = Annotated[int, Ge(-(2**63)), Le(2**63 - 1)]
Guid: TypeAlias = str
"""A GUID string (``8-4-4-4-12`` hex).  The format is not enforced: real documents use
upper case, braces and placeholders, and HCS itself judges them per field."""

_irregular: dict[str, str] = {}


def _alias(attr: str) -> str:
    return _irregular.get(attr) or to_pascal(attr)


def register_aliases(table: dict[str, str]) -> None:
    """Attribute -> JSON name entries that PascalCase alone gets wrong (``size_in_mb``)."""
    _irregular.update(table)


class HcsModel(BaseModel):
    """Base of every schema model."""

    model_config = ConfigDict(
        alias_generator=_alias,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="allow",
        strict=True,
        defer_build=True,
    )

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        """As pydantic's, but ``by_alias`` and ``exclude_unset`` default to True."""
        kwargs.setdefault("by_alias", True)
        kwargs.setdefault("exclude_unset", True)
        return super().model_dump(**kwargs)

    def model_dump_json(self, **kwargs: Any) -> str:
        """As pydantic's, but ``by_alias`` and ``exclude_unset`` default to True."""
        kwargs.setdefault("by_alias", True)
        kwargs.setdefault("exclude_unset", True)
        return super().model_dump_json(**kwargs)

    def to_json(self) -> str:
        """The document as HCS expects it: PascalCase, only the fields that were set."""
        return self.model_dump_json()

    def to_dict(self) -> dict[str, Any]:
        """The document as plain JSON values (what :meth:`to_json` would encode)."""
        return self.model_dump(mode="json")


_unknown: dict[tuple[type, str], Any] = {}


class HcsEnum(StrEnum):
    """A schema enumeration.  Unknown string values are kept (see :meth:`is_known`)."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, str):
            return None
        key = (cls, value)
        member = _unknown.get(key)
        if member is None:
            member = str.__new__(cls, value)
            member._name_ = value
            member._value_ = value
            _unknown[key] = member
        return member

    @property
    def is_known(self) -> bool:
        """False for a value that is not in the schema (kept from a newer host)."""
        return self._value_ in type(self)._value2member_map_

    def __repr__(self) -> str:
        if self.is_known:
            return super().__repr__()
        return f"<{type(self).__name__} (unknown): {self._value_!r}>"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def convert(value: Any) -> HcsEnum:
            if isinstance(value, cls):
                return value
            if isinstance(value, str):
                return cls(value)
            raise PydanticCustomError(
                "enum_type", "Input should be a string ({expected})", {"expected": cls._expected()}
            )

        return core_schema.no_info_plain_validator_function(
            convert,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: str.__str__(v), when_used="json"
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out: dict[str, Any] = {
            "type": "string",
            "enum": [m.value for m in cls],
            "title": cls.__name__,
        }
        if cls.__doc__:
            out["description"] = " ".join(cls.__doc__.split())
        return out

    @classmethod
    def _expected(cls) -> str:
        values = [repr(m.value) for m in cls]
        shown = ", ".join(values[:8])
        return f"one of {shown}{', ...' if len(values) > 8 else ''}"


def json_name(model: type[BaseModel], attr: str) -> str:
    """The JSON name of attribute ``attr`` of ``model``."""
    field = model.model_fields[attr]
    alias = field.serialization_alias or field.alias
    return alias if isinstance(alias, str) else _alias(attr)
