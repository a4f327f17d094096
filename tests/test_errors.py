"""HRESULT -> exception mapping, including the legacy 0xC037 twins."""

from __future__ import annotations

import json

import pytest

import aiohcs
from aiohcs import errors, hresults


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (hresults.HCS_E_INVALID_STATE, aiohcs.InvalidState),
        (hresults.HCS_E_SYSTEM_NOT_FOUND, aiohcs.SystemNotFound),
        (hresults.HCS_E_SYSTEM_ALREADY_EXISTS, aiohcs.SystemAlreadyExists),
        (hresults.HCS_E_SYSTEM_ALREADY_STOPPED, aiohcs.SystemAlreadyStopped),
        (hresults.HCS_E_INVALID_JSON, aiohcs.InvalidJson),
        (hresults.HCS_E_PROCESS_ALREADY_STOPPED, aiohcs.ProcessAlreadyStopped),
        (hresults.HCS_E_OPERATION_TIMEOUT, aiohcs.OperationTimeout),
        (hresults.HCS_E_OPERATION_PENDING, aiohcs.OperationPending),
        (hresults.HCS_E_SERVICE_DISCONNECT, aiohcs.ServiceDisconnected),
        (hresults.HCS_E_SERVICE_NOT_AVAILABLE, aiohcs.ServiceNotAvailable),
        (hresults.HCS_E_ACCESS_DENIED, aiohcs.AccessDenied),
        (hresults.E_ACCESSDENIED, aiohcs.AccessDenied),
        (hresults.HCS_E_UNEXPECTED_EXIT, aiohcs.UnexpectedExit),
        (hresults.E_FILE_NOT_FOUND, aiohcs.FileNotFound),
        (hresults.E_PATH_NOT_FOUND, aiohcs.FileNotFound),
        (hresults.E_NOT_FOUND, aiohcs.NotFound),
        (hresults.E_INVALIDARG, aiohcs.InvalidArgument),
        (hresults.E_ABORT, aiohcs.Aborted),
        (hresults.E_NOTIMPL, aiohcs.HcsNotImplemented),
        (hresults.E_HANDLE, aiohcs.InvalidHandle),
        (hresults.E_PROC_NOT_FOUND, aiohcs.ExportNotFound),
    ],
)
def test_mapping(code: int, cls: type[aiohcs.HcsError]) -> None:
    for value in (code, hresults.to_signed(code)):
        exc = errors.error_from_hresult(value)
        assert type(exc) is cls
        assert exc.hresult == code
        assert isinstance(exc, aiohcs.HcsError)


def test_every_hcs_code_has_its_own_class() -> None:
    codes = [v for k, v in vars(hresults).items() if k.startswith("HCS_E_")]
    classes = {errors.exception_class_for(c) for c in codes}
    assert aiohcs.HcsError not in classes
    assert len(classes) == len(codes)


@pytest.mark.parametrize(
    ("legacy", "cls"),
    [
        (0xC037010E, aiohcs.SystemNotFound),
        (0xC0370110, aiohcs.SystemAlreadyStopped),
        (0xC0370105, aiohcs.InvalidState),
        (0xC037010D, aiohcs.InvalidJson),
        (0xC0370106, aiohcs.UnexpectedExit),
        (0xC037010B, aiohcs.UnknownMessage),
    ],
)
def test_legacy_twins(legacy: int, cls: type[aiohcs.HcsError]) -> None:
    exc = errors.error_from_hresult(hresults.to_signed(legacy))
    assert type(exc) is cls
    assert exc.hresult == legacy  # kept as returned
    assert exc.code == legacy - 0x40000000  # normalised to 0x8037xxxx


def test_message_from_result_error_document() -> None:
    doc = json.dumps({"Error": hresults.to_signed(0x8037010E), "ErrorMessage": "no system 'x'"})
    exc = errors.error_from_hresult(0x8037010E, doc, context="HcsOpenComputeSystem")
    assert exc.message == "HcsOpenComputeSystem: no system 'x'"
    assert exc.document == json.loads(doc)
    assert "0x8037010E" in str(exc)


def test_missing_or_bad_document_uses_default_message() -> None:
    for doc in (None, "", "not json", "[1,2]", '{"Error": 5}'):
        exc = errors.error_from_hresult(hresults.HCS_E_INVALID_STATE, doc)
        assert exc.message == aiohcs.InvalidState.default_message


def test_unknown_code_is_base_class() -> None:
    exc = errors.error_from_hresult(0x80991234)
    assert type(exc) is aiohcs.HcsError
    assert exc.hresult == 0x80991234


def test_check_hresult() -> None:
    errors.check_hresult(0)
    with pytest.raises(aiohcs.SystemNotFound):
        errors.check_hresult(hresults.to_signed(hresults.HCS_E_SYSTEM_NOT_FOUND))


def test_builtin_bases() -> None:
    assert issubclass(aiohcs.OperationTimeout, TimeoutError)
    assert issubclass(aiohcs.HcsNotImplemented, NotImplementedError)
    assert issubclass(aiohcs.HandleClosed, aiohcs.InvalidHandle)
    assert aiohcs.HandleClosed().hresult == hresults.E_HANDLE
