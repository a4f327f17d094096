"""Documents in (model / dict / str -> UTF-16) and out (text -> models)."""

from __future__ import annotations

import json

import pytest

from aiohcs import schema
from aiohcs._documents import (
    MAX_PAYLOAD,
    parse_json,
    parse_model,
    parse_model_list,
    required_document,
    to_json,
    wide,
)
from aiohcs._ffi import ffi


def test_model_dumps_pascal_case_only_set_fields() -> None:
    doc = schema.ComputeSystem(
        owner="tests",
        schema_version=schema.Version(major=2, minor=1),
        container=schema.Container(storage=schema.Storage(layers=[schema.Layer(path="/r")])),
        should_terminate_on_last_handle_closed=True,
    )
    assert json.loads(to_json(doc) or "") == {
        "Owner": "tests",
        "SchemaVersion": {"Major": 2, "Minor": 1},
        "Container": {"Storage": {"Layers": [{"Path": "/r"}]}},
        "ShouldTerminateOnLastHandleClosed": True,
    }


def test_models_accept_aliases_and_keep_extra_fields() -> None:
    doc = schema.ProcessParameters.model_validate(
        {"CommandArgs": ["sh"], "CreateStdOutPipe": True, "OciProcess": {"Terminal": False}}
    )
    assert doc.command_args == ["sh"]
    assert doc.create_std_out_pipe is True
    assert json.loads(to_json(doc) or "")["OciProcess"] == {"Terminal": False}


def test_dict_and_string_and_none() -> None:
    assert to_json(None) is None
    assert to_json('{"Raw": 1') == '{"Raw": 1'  # sent verbatim; the service judges it
    assert json.loads(to_json({"A": [schema.Layer(path="/x")]}) or "") == {"A": [{"Path": "/x"}]}
    with pytest.raises(TypeError):
        to_json(42)  # type: ignore[arg-type]


def test_wide() -> None:
    assert wide(None) == ffi.NULL
    buf = wide("h\u00e9\U0001f600")
    assert ffi.string(buf) == "h\u00e9\U0001f600"
    with pytest.raises(ValueError):
        wide("a\x00b")


def test_parse_results() -> None:
    status = parse_model(schema.ProcessStatus, '{"ProcessId":7,"Exited":true,"ExitCode":3}')
    assert (status.process_id, status.exited, status.exit_code) == (7, True, 3)
    assert parse_model(schema.Properties, None).id is None
    props = parse_model_list(schema.Properties, '[{"Id":"a","State":"Running"},{"Id":"b"}]')
    assert [p.id for p in props] == ["a", "b"]
    assert parse_model_list(schema.Properties, "") == []
    assert parse_json("") is None
    exit_status = parse_model(schema.SystemExitStatus, '{"Status":0,"ExitType":"ForcedExit"}')
    assert exit_status.exit_type == "ForcedExit"
    err = parse_model(schema.ResultError, '{"Error":-2143878898,"ErrorMessage":"m"}')
    assert err.error_message == "m"
    sp = parse_model(schema.ServiceProperties, '{"Properties":[{"SupportedSchemaVersions":[]}]}')
    assert sp.properties == [{"SupportedSchemaVersions": []}]


def test_lone_surrogate_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="lone surrogate at index 2"):
        wide('{"\udc80"}')


def test_oversized_document_names_the_limit() -> None:
    assert MAX_PAYLOAD is not None
    with pytest.raises(ValueError, match=f"at most {MAX_PAYLOAD} bytes"):
        wide("x" * (MAX_PAYLOAD + 1))


@pytest.mark.parametrize("document", [None, "", "   ", b""])
def test_required_document_rejects_nothing(document: object) -> None:
    with pytest.raises(ValueError, match="the process parameters is required"):
        required_document(document, "the process parameters")  # type: ignore[arg-type]


async def test_open_process_rejects_bad_pid_before_any_native_call() -> None:
    from aiohcs.process import open_process

    for pid in (-1, 2**32, "7"):
        with pytest.raises(ValueError, match="pid must be an integer"):
            await open_process(None, pid)  # type: ignore[arg-type]
