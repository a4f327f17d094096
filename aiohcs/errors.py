"""HRESULT -> exception mapping.

Every failure from HCS is an HRESULT plus an optional ResultError document
(API.md §7.9).  :func:`error_from_hresult` turns the pair into an instance of the
:class:`HcsError` subclass named after the code, with the document's
``ErrorMessage`` as the message.  Legacy vmcompute twins (``0xC037xxxx``) map to
the same classes as their documented ``0x8037xxxx`` forms (API.md §4.3), so code
that catches ``SystemNotFound`` works against either.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from . import hresults as hr


class HcsError(Exception):
    """A failed HCS call.

    ``hresult`` is the unsigned 32-bit code as returned (legacy twins are kept
    as they came; ``code`` is the normalised ``0x8037xxxx`` form).  ``message``
    is the service's ``ErrorMessage`` when there was one, else a generic text.
    ``document`` is the parsed ResultError (a dict) or None.
    """

    #: The HRESULTs (normalised) this class stands for; used to build the registry.
    codes: ClassVar[tuple[int, ...]] = ()
    #: Text used when the service sent no ErrorMessage.
    default_message: ClassVar[str] = "HCS call failed"

    def __init__(
        self,
        message: str | None = None,
        *,
        hresult: int | None = None,
        document: dict[str, Any] | None = None,
    ) -> None:
        if hresult is None:
            hresult = self.codes[0] if self.codes else hr.E_FAIL
        self.hresult: int = hr.to_unsigned(hresult)
        self.message: str = message or self.default_message
        self.document: dict[str, Any] | None = document
        super().__init__(self.message)

    @property
    def code(self) -> int:
        """The HRESULT with a legacy ``0xC037`` twin mapped onto its ``0x8037`` form."""
        return hr.normalize(self.hresult)

    def __str__(self) -> str:
        return f"{self.message} (HRESULT 0x{self.hresult:08X})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, hresult=0x{self.hresult:08X})"


_REGISTRY: dict[int, type[HcsError]] = {}


def _register(cls: type[HcsError]) -> type[HcsError]:
    for code in cls.codes:
        if code in _REGISTRY:  # pragma: no cover - programming error
            raise RuntimeError(f"HRESULT 0x{code:08X} mapped twice")
        _REGISTRY[code] = cls
    return cls


# One class per HCS code (API.md §4.1).  Written out (not generated from a table
# at import) so type checkers and readers see every name.
class TerminatedDuringStart(HcsError):
    """The system exited unexpectedly while starting."""

    codes = (hr.HCS_E_TERMINATED_DURING_START,)
    default_message = "the compute system exited unexpectedly while starting"


class ImageMismatch(HcsError):
    """The container OS does not match the host OS."""

    codes = (hr.HCS_E_IMAGE_MISMATCH,)
    default_message = "the container image does not match the host"


class HyperVNotInstalled(HcsError):
    """A required feature (Hyper-V) is missing."""

    codes = (hr.HCS_E_HYPERV_NOT_INSTALLED,)
    default_message = "a required virtualization feature is not installed"


class InvalidState(HcsError):
    """The operation is not valid in the system's current state."""

    codes = (hr.HCS_E_INVALID_STATE,)
    default_message = "the operation is not valid in the current state"


class UnexpectedExit(HcsError):
    """The system exited unexpectedly."""

    codes = (hr.HCS_E_UNEXPECTED_EXIT,)
    default_message = "the compute system exited unexpectedly"


class Terminated(HcsError):
    """The system was forcefully terminated."""

    codes = (hr.HCS_E_TERMINATED,)
    default_message = "the compute system was terminated"


class ConnectFailed(HcsError):
    """Could not connect to the guest or container."""

    codes = (hr.HCS_E_CONNECT_FAILED,)
    default_message = "could not connect to the compute system"


class ConnectionTimeout(HcsError):
    """The guest did not answer in time."""

    codes = (hr.HCS_E_CONNECTION_TIMEOUT,)
    default_message = "the compute system did not answer in time"


class ConnectionClosed(HcsError):
    """The guest connection closed."""

    codes = (hr.HCS_E_CONNECTION_CLOSED,)
    default_message = "the connection to the compute system closed"


class UnknownMessage(HcsError):
    """The guest received a message it does not know."""

    codes = (hr.HCS_E_UNKNOWN_MESSAGE,)
    default_message = "the compute system received an unknown message"


class UnsupportedProtocolVersion(HcsError):
    """No protocol version in common."""

    codes = (hr.HCS_E_UNSUPPORTED_PROTOCOL_VERSION,)
    default_message = "no protocol version in common"


class InvalidJson(HcsError):
    """A JSON document was malformed or had the wrong shape."""

    codes = (hr.HCS_E_INVALID_JSON,)
    default_message = "the JSON document is invalid"


class SystemNotFound(HcsError):
    """No compute system has that id."""

    codes = (hr.HCS_E_SYSTEM_NOT_FOUND,)
    default_message = "no compute system with that id"


class SystemAlreadyExists(HcsError):
    """A compute system with that id already exists."""

    codes = (hr.HCS_E_SYSTEM_ALREADY_EXISTS,)
    default_message = "a compute system with that id already exists"


class SystemAlreadyStopped(HcsError):
    """The compute system is not running."""

    codes = (hr.HCS_E_SYSTEM_ALREADY_STOPPED,)
    default_message = "the compute system has already stopped"


class ProtocolError(HcsError):
    """Host and guest disagree on the protocol."""

    codes = (hr.HCS_E_PROTOCOL_ERROR,)
    default_message = "protocol error"


class InvalidLayer(HcsError):
    """An image layer is in a format HCS does not recognise."""

    codes = (hr.HCS_E_INVALID_LAYER,)
    default_message = "invalid image layer"


class WindowsInsiderRequired(HcsError):
    """The image needs an Insider build."""

    codes = (hr.HCS_E_WINDOWS_INSIDER_REQUIRED,)
    default_message = "the image requires a Windows Insider build"


class ServiceNotAvailable(HcsError):
    """A feature the operation needs is not available."""

    codes = (hr.HCS_E_SERVICE_NOT_AVAILABLE,)
    default_message = "the compute service is not available"


class OperationNotStarted(HcsError):
    """The operation handle has not been used by any call yet."""

    codes = (hr.HCS_E_OPERATION_NOT_STARTED,)
    default_message = "the operation has not started"


class OperationAlreadyStarted(HcsError):
    """The operation handle is already tracking a call."""

    codes = (hr.HCS_E_OPERATION_ALREADY_STARTED,)
    default_message = "the operation is already running"


class OperationPending(HcsError):
    """The operation is still in progress."""

    codes = (hr.HCS_E_OPERATION_PENDING,)
    default_message = "the operation is still pending"


class OperationTimeout(HcsError, TimeoutError):
    """A wait elapsed before the operation completed."""

    codes = (hr.HCS_E_OPERATION_TIMEOUT,)
    default_message = "the operation timed out"


class OperationSystemCallbackAlreadySet(HcsError):
    """An event callback is already registered on the handle."""

    codes = (hr.HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET,)
    default_message = "a callback is already registered"


class OperationResultAllocationFailed(HcsError):
    """No memory to return the result."""

    codes = (hr.HCS_E_OPERATION_RESULT_ALLOCATION_FAILED,)
    default_message = "could not allocate the operation result"


class AccessDenied(HcsError):
    """The caller may not do this (HCS_E_ACCESS_DENIED or E_ACCESSDENIED)."""

    codes = (hr.HCS_E_ACCESS_DENIED, hr.E_ACCESSDENIED)
    default_message = "access denied"


class GuestCriticalError(HcsError):
    """The guest reported a critical error."""

    codes = (hr.HCS_E_GUEST_CRITICAL_ERROR,)
    default_message = "the guest reported a critical error"


class ProcessInfoNotAvailable(HcsError):
    """Process information is not available."""

    codes = (hr.HCS_E_PROCESS_INFO_NOT_AVAILABLE,)
    default_message = "process information is not available"


class ServiceDisconnected(HcsError):
    """The connection to the HCS service was lost."""

    codes = (hr.HCS_E_SERVICE_DISCONNECT,)
    default_message = "lost communication with the compute service"


class ProcessAlreadyStopped(HcsError):
    """The process has already exited."""

    codes = (hr.HCS_E_PROCESS_ALREADY_STOPPED,)
    default_message = "the process has already exited"


class SystemNotConfiguredForOperation(HcsError):
    """The system is not configured for this operation."""

    codes = (hr.HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION,)
    default_message = "the compute system is not configured for this operation"


class OperationAlreadyCancelled(HcsError):
    """The operation was already cancelled."""

    codes = (hr.HCS_E_OPERATION_ALREADY_CANCELLED,)
    default_message = "the operation was already cancelled"


# Generic Win32/COM codes met with this API (API.md §4.2).
class FileNotFound(HcsError):
    """A file or path named in a document does not exist."""

    codes = (hr.E_FILE_NOT_FOUND, hr.E_PATH_NOT_FOUND)
    default_message = "file not found"


class NotFound(HcsError):
    """The element (typically a process) does not exist (ERROR_NOT_FOUND)."""

    codes = (hr.E_NOT_FOUND,)
    default_message = "not found"


class InvalidArgument(HcsError, ValueError):
    """An argument was invalid (E_INVALIDARG, E_POINTER)."""

    codes = (hr.E_INVALIDARG, hr.E_POINTER)
    default_message = "invalid argument"


class InvalidData(HcsError):
    """The request is invalid or unsupported (ERROR_INVALID_DATA)."""

    codes = (hr.E_INVALID_DATA,)
    default_message = "invalid data"


class Aborted(HcsError):
    """The operation was aborted (E_ABORT), e.g. after HcsCancelOperation."""

    codes = (hr.E_ABORT,)
    default_message = "the operation was aborted"


class HcsNotImplemented(HcsError, NotImplementedError):
    """E_NOTIMPL: the entry point exists but does nothing on this platform.

    Named ``HcsNotImplemented`` rather than ``NotImplemented`` so that a star
    import does not shadow the builtin constant.
    """

    codes = (hr.E_NOTIMPL,)
    default_message = "not implemented"


class NotSupported(HcsError):
    """ERROR_NOT_SUPPORTED: the platform does not support the request."""

    codes = (hr.E_NOT_SUPPORTED,)
    default_message = "not supported"


class InvalidHandle(HcsError):
    """The handle is invalid or already closed (E_HANDLE)."""

    codes: ClassVar[tuple[int, ...]] = (hr.E_HANDLE,)
    default_message = "invalid handle"


class OutOfMemory(HcsError, MemoryError):
    """E_OUTOFMEMORY."""

    codes = (hr.E_OUTOFMEMORY,)
    default_message = "out of memory"


class ExportNotFound(HcsError):
    """The loaded HCS library does not export the function (ERROR_PROC_NOT_FOUND)."""

    codes = (hr.E_PROC_NOT_FOUND,)
    default_message = "the HCS library does not export this function"


class ObjectAlreadyExists(HcsError):
    """ERROR_OBJECT_ALREADY_EXISTS."""

    codes = (hr.E_OBJECT_ALREADY_EXISTS,)
    default_message = "the object already exists"


class Unexpected(HcsError):
    """E_UNEXPECTED."""

    codes = (hr.E_UNEXPECTED,)
    default_message = "unexpected failure"


class HandleClosed(InvalidHandle):
    """Raised locally: our handle was closed before the call, or while a wait was pending."""

    codes: ClassVar[tuple[int, ...]] = ()
    default_message = "the handle is closed"

    def __init__(
        self,
        message: str | None = None,
        *,
        hresult: int = hr.E_HANDLE,
        document: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, hresult=hresult, document=document)


for _cls in list(HcsError.__subclasses__()):
    if _cls.codes:
        _register(_cls)
del _cls


def exception_class_for(hresult: int) -> type[HcsError]:
    """The class for an HRESULT (either sign, either twin); :class:`HcsError` if unknown."""
    return _REGISTRY.get(hr.normalize(hresult), HcsError)


def parse_result_error(document: str | bytes | dict[str, Any] | None) -> dict[str, Any] | None:
    """Parse a ResultError document; anything unparsable yields None (never raises)."""
    if document is None:
        return None
    if isinstance(document, dict):
        return document
    try:
        parsed = json.loads(document)
    except (ValueError, TypeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def error_from_hresult(
    hresult: int,
    document: str | bytes | dict[str, Any] | None = None,
    *,
    context: str | None = None,
) -> HcsError:
    """Build the exception for a failed call.

    ``document`` is the ResultError text (or parsed dict) the operation returned,
    if any.  ``context`` (e.g. ``"HcsStartComputeSystem"``) is prefixed to the
    message so a log line says which call failed.  A document whose ``Error``
    field disagrees with ``hresult`` does not change the class: the HRESULT the
    API returned is authoritative.
    """
    parsed = parse_result_error(document)
    message: str | None = None
    if parsed is not None:
        text = parsed.get("ErrorMessage")
        if isinstance(text, str) and text:
            message = text
    cls = exception_class_for(hresult)
    if message is None:
        message = cls.default_message
    if context:
        message = f"{context}: {message}"
    return cls(message, hresult=hresult, document=parsed)


def check_hresult(hresult: int, document: str | None = None, *, context: str | None = None) -> None:
    """Raise the mapped exception when ``hresult`` is a failure code."""
    if hr.failed(hresult):
        raise error_from_hresult(hresult, document, context=context)


__all__ = [
    "Aborted",
    "AccessDenied",
    "ConnectFailed",
    "ConnectionClosed",
    "ConnectionTimeout",
    "ExportNotFound",
    "FileNotFound",
    "GuestCriticalError",
    "HandleClosed",
    "HcsError",
    "HcsNotImplemented",
    "HyperVNotInstalled",
    "ImageMismatch",
    "InvalidArgument",
    "InvalidData",
    "InvalidHandle",
    "InvalidJson",
    "InvalidLayer",
    "InvalidState",
    "NotFound",
    "NotSupported",
    "ObjectAlreadyExists",
    "OperationAlreadyCancelled",
    "OperationAlreadyStarted",
    "OperationNotStarted",
    "OperationPending",
    "OperationResultAllocationFailed",
    "OperationSystemCallbackAlreadySet",
    "OperationTimeout",
    "OutOfMemory",
    "ProcessAlreadyStopped",
    "ProcessInfoNotAvailable",
    "ProtocolError",
    "ServiceDisconnected",
    "ServiceNotAvailable",
    "SystemAlreadyExists",
    "SystemAlreadyStopped",
    "SystemNotConfiguredForOperation",
    "SystemNotFound",
    "Terminated",
    "TerminatedDuringStart",
    "Unexpected",
    "UnexpectedExit",
    "UnknownMessage",
    "UnsupportedProtocolVersion",
    "WindowsInsiderRequired",
    "check_hresult",
    "error_from_hresult",
    "exception_class_for",
    "parse_result_error",
]
