"""Module-level HCS calls that act on the service, not on one handle."""

from __future__ import annotations

from . import _bridge
from ._documents import Document, parse_model, parse_model_list, wide_document
from ._ffi import ffi, get_lib
from .errors import error_from_hresult
from .schema import Properties, ServiceProperties


async def enumerate_systems(query: Document = None) -> list[Properties]:
    """Properties of every compute system matching a SystemQuery (all when None)."""
    lib = get_lib()
    text = wide_document(query)
    outcome = await _bridge.submit(
        lambda op: lib.HcsEnumerateComputeSystems(text, op),
        name="HcsEnumerateComputeSystems",
        keepalive=(text,),
    )
    return parse_model_list(Properties, outcome.document)


def _sync_call(name: str, document: Document) -> tuple[int, str | None]:
    """Run a synchronous HCS call that returns an out-string (worker thread)."""
    lib = get_lib()
    text = wide_document(document)
    out = ffi.new("PWSTR *")
    result = int(getattr(lib, name)(text, out))
    return result, _bridge.take_string(out[0])


async def get_service_properties(query: Document = None) -> ServiceProperties:
    """ServiceProperties for a Service_PropertyQuery (e.g. ``{"PropertyTypes": ["Basic"]}``).

    HcsGetServiceProperties is synchronous, so it runs in a worker thread.
    """
    result, doc = await _bridge.run_blocking(lambda: _sync_call("HcsGetServiceProperties", query))
    if result < 0:
        raise error_from_hresult(result, doc, context="HcsGetServiceProperties")
    return parse_model(ServiceProperties, doc)


async def modify_service_settings(settings: Document) -> None:
    """Apply a ModificationRequest (HcsModifyServiceSettings; synchronous, worker thread)."""
    result, doc = await _bridge.run_blocking(
        lambda: _sync_call("HcsModifyServiceSettings", settings)
    )
    if result < 0:
        raise error_from_hresult(result, doc, context="HcsModifyServiceSettings")
