"""The aiohcs host service: owns compute systems on Linux for libcomputecore.

Run it with ``python -m aiohcs.host`` or the ``aiohcs-host`` console script.
See docs/host.md for how it works and docs/protocol.md for the wire.
"""
