"""HcsFault: an operation failure carrying its HRESULT and ResultError text."""

from __future__ import annotations

import json

from aiohcs import hresults


class HcsFault(Exception):
    """Raised anywhere in the service; the dispatcher turns it into a reply.

    `message` must name the problem and, for document errors, the JSON field.
    """

    def __init__(self, hresult: int, message: str) -> None:
        super().__init__(message)
        self.hresult = hresults.to_unsigned(hresult)
        self.message = message

    def result_error(self) -> bytes:
        """The ResultError document of this failure."""
        doc = {"Error": hresults.to_signed(self.hresult), "ErrorMessage": self.message}
        return json.dumps(doc).encode("utf-8")

    def __repr__(self) -> str:
        return f"HcsFault(0x{self.hresult:08X}, {self.message!r})"


def system_not_found(system_id: str) -> HcsFault:
    return HcsFault(hresults.HCS_E_SYSTEM_NOT_FOUND, f"compute system {system_id!r} not found")
