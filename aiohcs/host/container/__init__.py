"""Container backend: HCS Container documents run as OCI containers (runc/crun)."""
