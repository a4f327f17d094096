"""aiohcs: an asyncio client for the Host Compute System (HCS) API.

::

    async with await aiohcs.create_system("demo", config) as system:
        await system.start()
        proc = await system.create_process({"CommandArgs": ["echo", "hi"],
                                            "CreateStdOutPipe": True})
        out, err = await proc.communicate()

Against Windows' computecore.dll, or on Linux against libcomputecore and the
aiohcs host service.  Every call is awaited through HCS's completion
callbacks; nothing blocks the event loop.
"""

from __future__ import annotations

from . import schema
from .errors import *  # noqa: F403 - the error classes are part of the public API
from .errors import __all__ as _errors_all
from .events import Event, EventStream, EventType
from .process import Process
from .service import enumerate_systems, get_service_properties, modify_service_settings
from .system import System, create_system, open_system

__version__ = "0.1.0"

__all__ = [
    "Event",
    "EventStream",
    "EventType",
    "Process",
    "System",
    "create_system",
    "enumerate_systems",
    "get_service_properties",
    "modify_service_settings",
    "open_system",
    "schema",
    *_errors_all,
]
