"""python -m aiohcs.uvm {path|build [--force]} — see aiohcs.uvm.builder."""

from __future__ import annotations

import argparse
import json
import sys

from aiohcs.uvm.builder import UvmError, build, ensure


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aiohcs.uvm", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("path", help='print {"kernel": ..., "initrd": ...} as JSON, building if missing')
    b = sub.add_parser("build", help="build the utility VM (no-op when cached)")
    b.add_argument("--force", action="store_true", help="rebuild even when cached")
    args = ap.parse_args(argv)
    try:
        paths = build(force=True) if args.cmd == "build" and args.force else ensure()
    except UvmError as e:
        print(f"aiohcs.uvm: {e}", file=sys.stderr)
        return 1
    if args.cmd == "path":
        print(json.dumps({"kernel": str(paths.kernel), "initrd": str(paths.initrd)}))
    else:
        print(f"kernel {paths.kernel}\ninitrd {paths.initrd}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
