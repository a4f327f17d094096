"""Property-based round trips: generated JSON documents of the main models (with unknown
properties and unknown enum values) parse and dump back to the same JSON."""

from __future__ import annotations

import json
import string
import types
from typing import Annotated, Any, Union, get_args, get_origin

import annotated_types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiohcs import schema

MAIN: list[type[schema.HcsModel]] = [
    schema.ComputeSystem,
    schema.VirtualMachine,
    schema.Container,
    schema.ProcessParameters,
    schema.Properties,
    schema.ModifySettingRequest,
]
KINDS = ("Container", "VirtualMachine", "HostedSystem")

json_leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
# Unknown property names: PascalCase, so never an attribute name.
extra_key = st.text(string.ascii_letters, min_size=1, max_size=8).map(lambda s: "X" + s)


def value_of(tp: Any, depth: int) -> st.SearchStrategy[Any]:
    origin = get_origin(tp)
    if tp is Any:
        return json_value
    if origin is Annotated:
        base, *meta = get_args(tp)
        lo = next((m.ge for m in meta if isinstance(m, annotated_types.Ge)), None)
        hi = next((m.le for m in meta if isinstance(m, annotated_types.Le)), None)
        assert base is int
        return st.integers(lo, hi)  # type: ignore[arg-type]
    if origin in (Union, types.UnionType):
        return st.one_of([value_of(a, depth) for a in get_args(tp)])
    if origin is list:
        return st.lists(value_of(get_args(tp)[0], depth + 1), max_size=2 if depth < 3 else 0)
    if origin is dict:
        inner = value_of(get_args(tp)[1], depth + 1)
        return st.dictionaries(st.text(max_size=6), inner, max_size=2 if depth < 3 else 0)
    if tp is type(None):
        return st.none()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers()
    if tp is str:
        return st.text(max_size=10)
    if isinstance(tp, type) and issubclass(tp, schema.HcsEnum):
        return st.sampled_from([m.value for m in tp]) | st.text(max_size=6)
    if isinstance(tp, type) and issubclass(tp, schema.HcsModel):
        return document_of(tp, depth + 1)
    raise AssertionError(f"no strategy for {tp!r}")


def document_of(model: type[schema.HcsModel], depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    if depth > 4:
        return st.just({})
    model.model_rebuild()
    fields = {schema.json_name(model, a): f.annotation for a, f in model.model_fields.items()}
    if model is schema.ComputeSystem:
        for k in KINDS:
            fields.pop(k)
    optional = {name: _lazy(tp, depth) for name, tp in fields.items()}
    doc = st.fixed_dictionaries({}, optional=optional)
    extras = st.dictionaries(extra_key, json_value, max_size=2)
    out = st.tuples(doc, extras).map(lambda de: {**de[0], **de[1]})
    if model is schema.ComputeSystem:
        kind = st.sampled_from(KINDS).flatmap(
            lambda k: st.tuples(st.just(k), value_of(_kind_type(k), depth + 1).filter(_not_none))
        )
        out = st.tuples(out, kind).map(lambda dk: {**dk[0], dk[1][0]: dk[1][1]})
    return out


def _lazy(tp: Any, depth: int) -> st.SearchStrategy[Any]:
    return st.deferred(lambda: value_of(tp, depth))


def _kind_type(kind: str) -> Any:
    return {"Container": schema.Container, "VirtualMachine": schema.VirtualMachine}.get(kind, Any)


def _not_none(v: Any) -> bool:
    return v is not None


def _round_trip(model: type[schema.HcsModel], doc: dict[str, Any]) -> None:
    parsed = model.model_validate(doc)
    assert parsed.model_dump(mode="json") == doc
    text = parsed.model_dump_json()
    assert json.loads(text) == doc
    again = model.model_validate_json(text)
    assert again == parsed
    assert again.model_dump_json() == text


SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(data=st.data())
def test_main_models_round_trip(data: st.DataObject) -> None:
    for model in MAIN:
        _round_trip(model, data.draw(document_of(model), label=model.__name__))


OTHERS: list[type[schema.HcsModel]] = [m for m in schema.all_models() if m not in MAIN]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_model_round_trips(data: st.DataObject) -> None:
    model: type[schema.HcsModel] = data.draw(st.sampled_from(OTHERS), label="model")
    _round_trip(model, data.draw(document_of(model, depth=2), label=model.__name__))


@SETTINGS
@given(data=st.data())
def test_instances_built_in_python_round_trip(data: st.DataObject) -> None:
    # Build through the constructor (attribute names), dump, parse: the same model.
    doc = data.draw(document_of(schema.VirtualMachine))
    vm = schema.VirtualMachine.model_validate(doc)
    rebuilt = schema.VirtualMachine(**{a: getattr(vm, a) for a in vm.model_fields_set})
    for k, v in (vm.model_extra or {}).items():
        setattr(rebuilt, k, v)
    assert schema.VirtualMachine.model_validate_json(rebuilt.model_dump_json()) == vm
