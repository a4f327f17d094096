"""Documents in and out: Python values -> UTF-16 payloads, result text -> models.

HCS takes every document as UTF-16 JSON text.  Callers may give a pydantic
model (dumped by alias, only set fields), a mapping/list (``json.dumps``), a
JSON string (sent verbatim: the service is the judge of its validity, so a
malformed string fails with InvalidJson and the service's message), or None
(a NULL pointer: "no document").
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias, TypeVar

from pydantic import BaseModel

from ._ffi import ffi

Document: TypeAlias = BaseModel | Mapping[str, Any] | Sequence[Any] | str | bytes | None

M = TypeVar("M", bound=BaseModel)

# The Linux host service takes frames of at most 16 MiB (docs/protocol.md); saying so
# here beats a bare E_INVALIDARG from the library.
MAX_PAYLOAD = 16 * 1024 * 1024 if sys.platform != "win32" else None


def to_json(document: Document) -> str | None:
    """The JSON text of a document, or None for "no document"."""
    if document is None:
        return None
    if isinstance(document, BaseModel):
        return document.model_dump_json(by_alias=True, exclude_unset=True)
    if isinstance(document, str):
        return document
    if isinstance(document, bytes | bytearray):
        return bytes(document).decode("utf-8")
    if isinstance(document, Mapping | list | tuple):
        return json.dumps(_plain(document), separators=(",", ":"))
    raise TypeError(
        f"a document must be a pydantic model, dict, list, JSON string or None, "
        f"not {type(document).__name__}"
    )


def _plain(value: Any) -> Any:
    """Mappings/lists that may contain pydantic models -> plain JSON values."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def wide(text: str | None) -> Any:
    """A NUL-terminated ``char16_t[]`` for ``text`` (ffi.NULL for None).

    The caller must keep the returned cdata alive for as long as the native
    call may read it (for an async call: until its completion arrives).
    """
    if text is None:
        return ffi.NULL
    if not isinstance(text, str):
        raise TypeError(f"HCS strings must be str, not {type(text).__name__}")
    if "\x00" in text:
        raise ValueError("HCS strings cannot contain NUL characters")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise ValueError(
            f"HCS strings must be valid Unicode: lone surrogate at index {e.start}"
        ) from None
    if MAX_PAYLOAD is not None and size > MAX_PAYLOAD:
        raise ValueError(
            f"document is {size} bytes of UTF-8; the host service accepts at most "
            f"{MAX_PAYLOAD} bytes"
        )
    return ffi.new("char16_t[]", text)


def required_document(document: Document, what: str) -> Any:
    """:func:`wide_document` for a parameter HCS requires (no NULL, no empty text)."""
    text = to_json(document)
    if text is None or not text.strip():
        raise ValueError(f"{what} is required: give a model, a dict or JSON text")
    return wide(text)


def wide_document(document: Document) -> Any:
    """:func:`to_json` then :func:`wide`."""
    return wide(to_json(document))


def parse_json(text: str | None) -> Any:
    """Parse a result document; None or empty text gives None."""
    if text is None or not text.strip():
        return None
    return json.loads(text)


def parse_model(model: type[M], text: str | None) -> M:
    """Parse a result document into ``model``; no document gives an empty model."""
    if text is None or not text.strip():
        return model.model_validate({})
    return model.model_validate_json(text)


def parse_model_list(model: type[M], text: str | None) -> list[M]:
    """Parse a JSON array document (e.g. HcsEnumerateComputeSystems) into models."""
    value = parse_json(text)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON array, got {type(value).__name__}")
    return [model.model_validate(item) for item in value]
