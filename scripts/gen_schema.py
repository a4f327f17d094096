#!/usr/bin/env python3
"""Generate aiohcs/schema/_models.py from the official HCS schema files.

    python scripts/gen_schema.py            # write aiohcs/schema/_models.py
    python scripts/gen_schema.py --check    # exit 1 if the committed file is stale

Input: every ``hcs-schema-*.json`` in ``aiohcs/schema/data/`` (OpenAPI 2.0
files from the Windows SDKs; only ``definitions`` is used).  The files are
merged oldest to newest:

* the newest file decides a field's type and the order of fields;
* a field or enum value that exists only in an older file is still added
  (its docstring says which versions have it);
* an object definition that a newer file renamed (e.g. 1809's ``Memory_2``
  became ``VirtualMachine_Memory``) is folded into its new name;
* a definition that only older files have is generated too.

A short table of *extensions* (fields real HCS accepts that no published file
has, e.g. ``ComputeTopology.Memory.Backing``) is applied last; see
``EXTENSIONS`` below.  Output is formatted with ``ruff format``.
"""

from __future__ import annotations

import argparse
import builtins
import copy
import json
import keyword
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "aiohcs" / "schema" / "data"
OUT = ROOT / "aiohcs" / "schema" / "_models.py"

# Release order of the SDK schema files (file stem suffix -> short label).
VERSIONS = [
    ("win10-1809", "1809"),
    ("win10-1903", "1903"),
    ("win10-2004", "2004"),
    ("win10-2104", "2104"),
    ("win11-21h2", "21H2"),
]

GUID_PATTERN = "^[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}$"

INT_FORMATS = {
    "uint8": "UInt8",
    "uint16": "UInt16",
    "uint32": "UInt32",
    "uint64": "UInt64",
    "int32": "Int32",
    "int64": "Int64",
}

# Fields and enum values that real HCS accepts but no published schema file
# has.  Each entry: definition -> {JSON name: OpenAPI property}, plus whole new
# definitions.  Sources are in the comments; keep this table short.
EXTENSION_DEFINITIONS: dict[str, dict[str, Any]] = {
    # hcsshim internal/hcs/schema2/memory_backing_type.go; used by the official
    # samples (Tutorial.md, OperationCompletionSample.md).
    "MemoryBackingType": {
        "type": "string",
        "description": "Memory backing of a VM (not in the published schema files; "
        "used by the official samples and hcsshim).",
        "enum": ["Physical", "Virtual", "Hybrid"],
    },
    # hcsshim internal/hcs/schema2/security_settings.go, isolation_settings.go
    # (schema 2.5+ builds; absent from the published files).
    "SecuritySettings": {
        "type": "object",
        "description": "Security settings of a VM (schema 2.5+, from hcsshim; not in the "
        "published schema files).",
        "properties": {
            "EnableTpm": {"type": "boolean"},
            "Isolation": {"$ref": "#/definitions/IsolationSettings"},
        },
    },
    "IsolationSettings": {
        "type": "object",
        "description": "Hardware isolation of a confidential VM (from hcsshim).",
        "properties": {
            "IsolationType": {"type": "string"},
            "DebugHostBridging": {"type": "boolean"},
            "LaunchData": {"type": "string", "format": "byte"},
            "HclEnabled": {"type": "boolean"},
        },
    },
}
EXTENSION_FIELDS: dict[str, dict[str, Any]] = {
    "VirtualMachine_Memory": {
        "Backing": {"type": "string", "$ref": "#/definitions/MemoryBackingType"}
    },
    "VirtualMachine": {"SecuritySettings": {"$ref": "#/definitions/SecuritySettings"}},
    # hcsshim guest_state.go: "FileMode" / "BlockStorage" on 2.5+ builds.
    "GuestState": {"GuestStateFileType": {"type": "string"}},
}
# Definitions whose model inherits rules from aiohcs/schema/_rules.py.
BASES: dict[str, str] = {"ComputeSystem": "ComputeSystemRules"}

EXTENSION_ENUM_VALUES: dict[str, list[str]] = {
    # Observed live on Windows 11 (WSL's virtio-fs FlexibleIov device).
    "FlexibleIoDeviceHostingModel": ["ExternalRestricted"],
}


# --------------------------------------------------------------------------- merge


def load() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for stem, label in VERSIONS:
        path = DATA / f"hcs-schema-{stem}.json"
        out.append((label, json.loads(path.read_text())["definitions"]))
    return out


def ref_name(prop: dict[str, Any]) -> str | None:
    ref = prop.get("$ref") or (prop.get("items") or {}).get("$ref")
    if ref is None and isinstance(prop.get("additionalProperties"), dict):
        ref = prop["additionalProperties"].get("$ref")
    return ref.rsplit("/", 1)[1] if ref else None


def find_renames(versions: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """Old object definition name -> the newest name of the same thing.

    Detected where a field keeps its name but its $ref changes to a definition
    the old file lacks, and the old target is gone from the newest file.
    """
    newest = versions[-1][1]
    renames: dict[str, str] = {}
    for _, defs in versions[:-1]:
        for name, d in defs.items():
            nd = newest.get(name)
            if nd is None:
                continue
            for pname, prop in d.get("properties", {}).items():
                nprop = nd.get("properties", {}).get(pname)
                if nprop is None:
                    continue
                old, new = ref_name(prop), ref_name(nprop)
                if (
                    old
                    and new
                    and old != new
                    and old not in newest
                    and defs[old].get("type") == "object"
                    and newest[new].get("type") == "object"
                ):
                    renames[old] = new
    return renames


def retarget(prop: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    prop = copy.deepcopy(prop)

    def fix(p: dict[str, Any]) -> None:
        if "$ref" in p:
            name = p["$ref"].rsplit("/", 1)[1]
            p["$ref"] = "#/definitions/" + renames.get(name, name)
        for k in ("items", "additionalProperties"):
            if isinstance(p.get(k), dict):
                fix(p[k])

    fix(prop)
    return prop


def merge(versions: list[tuple[str, dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Merged definitions; each carries x-versions (labels of the files that have it)
    and each property / enum value x-versions as well."""
    renames = find_renames(versions)
    labels = [label for label, _ in versions]
    merged: dict[str, Any] = {}
    for label, defs in reversed(versions):  # newest first: it decides types and order
        for name, d in defs.items():
            target = renames.get(name, name)
            d = copy.deepcopy(d)
            m = merged.get(target)
            if m is None:
                m = merged[target] = {k: v for k, v in d.items() if k not in ("properties", "enum")}
                m["x-versions"] = []
                if "properties" in d or d.get("type") == "object":
                    m["properties"] = {}
                if "enum" in d:
                    m["enum"] = {}
            if label not in m["x-versions"]:
                m["x-versions"].append(label)
            for pname, prop in d.get("properties", {}).items():
                mp = m.setdefault("properties", {}).get(pname)
                if mp is None:
                    mp = m["properties"][pname] = retarget(prop, renames)
                    mp["x-versions"] = []
                mp["x-versions"].append(label)
            for value in d.get("enum", []):
                m["enum"].setdefault(value, []).append(label)
    for m in merged.values():
        m["x-versions"].sort(key=labels.index)
        for prop in m.get("properties", {}).values():
            prop["x-versions"].sort(key=labels.index)
        if "enum" in m:
            m["enum"] = {v: sorted(vs, key=labels.index) for v, vs in m["enum"].items()}
    for name, d in EXTENSION_DEFINITIONS.items():
        assert name not in merged, f"extension {name} is now in the schema: drop it"
        d = copy.deepcopy(d)
        d["x-versions"] = ["extension"]
        if "enum" in d:
            d["enum"] = {v: ["extension"] for v in d["enum"]}
        for prop in d.get("properties", {}).values():
            prop["x-versions"] = ["extension"]
        merged[name] = d
    for name, fields in EXTENSION_FIELDS.items():
        for pname, prop in fields.items():
            assert pname not in merged[name]["properties"], f"{name}.{pname} is now published"
            merged[name]["properties"][pname] = {**prop, "x-versions": ["extension"]}
    for name, values in EXTENSION_ENUM_VALUES.items():
        for v in values:
            assert v not in merged[name]["enum"], f"{name}.{v} is now published"
            merged[name]["enum"][v] = ["extension"]
    return merged, renames


# --------------------------------------------------------------------------- names


def class_name(definition: str) -> str:
    """``Container_Memory`` -> ``ContainerMemory``; ``PropertyQuery_2`` -> ``PropertyQuery2``."""
    name = "".join(part[:1].upper() + part[1:] for part in definition.split("_"))
    # A builtin name (SystemExit) would be resolved to the builtin in annotations.
    return name + "_" if hasattr(builtins, name) else name


_SNAKE_1 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_SNAKE_2 = re.compile(r"([a-z0-9])([A-Z])")
_RESERVED = set(keyword.kwlist) | {
    "model_config",
    "model_fields",
    "schema",
    "json",
    "dict",
    "copy",
    "validate",
    "construct",
}


# Mixed-case words that would otherwise split oddly (``qo_s``, ``virtual_p_mem``).
_WORDS = {
    "MHz": "Mhz",
    "QoS": "Qos",
    "PMem": "Pmem",
    "P2P": "P2p",
    "DWord": "Dword",
    "QWord": "Qword",
}


def snake(name: str) -> str:
    """``SizeInMB`` -> ``size_in_mb``; ``UserTime100ns`` -> ``user_time100ns``."""
    for odd, even in _WORDS.items():
        name = name.replace(odd, even)
    s = _SNAKE_2.sub(r"\1_\2", _SNAKE_1.sub(r"\1_\2", name)).lower()
    if s in _RESERVED or s.startswith("model_"):
        s += "_"
    return s


def default_alias(attr: str) -> str:
    """What the models' alias generator gives without a table entry (pydantic's to_pascal)."""
    from pydantic.alias_generators import to_pascal

    return to_pascal(attr)


def member_name(value: str) -> str:
    if value == "":
        return "Empty"
    name = re.sub(r"\W", "_", value)
    if name[0].isdigit():
        name = "V" + name
    if keyword.iskeyword(name):
        name += "_"
    return name


# --------------------------------------------------------------------------- emit


def versions_note(vs: list[str]) -> str:
    if vs == ["extension"]:
        return "Not in the published schema files (accepted by real HCS)."
    all_labels = [label for _, label in VERSIONS]
    if vs == all_labels:
        return ""
    if vs[-1] == all_labels[-1]:
        return f"Schema files: {vs[0]} and later."
    return f"Schema files: {', '.join(vs)} only (kept for older hosts)."


def py_type(prop: dict[str, Any], merged: dict[str, Any]) -> str:
    ref = prop.get("$ref")
    if ref:
        return class_name(ref.rsplit("/", 1)[1])
    t = prop.get("type")
    if t == "string":
        if prop.get("pattern") == GUID_PATTERN:
            return "Guid"
        return "str"
    if t == "integer":
        return INT_FORMATS.get(prop.get("format", ""), "int")
    if t == "number":
        return "float"
    if t == "boolean":
        return "bool"
    if t == "array":
        return f"list[{py_type(prop.get('items', {}), merged)}]"
    if t == "object" or t is None:
        ap = prop.get("additionalProperties")
        if isinstance(ap, dict):
            return f"dict[str, {py_type(ap, merged)}]"
        return "Any"
    # The 1809-2004 files type NvramVendor.Variables as a C++ template name.
    m = re.fullmatch(r"CaseInsensitiveStringMap<[\w.]*\.(\w+)>", t or "")
    if m and m.group(1) in merged:
        return f"dict[str, {class_name(m.group(1))}]"
    raise ValueError(f"unhandled property {prop}")


def sentence(*parts: str) -> str:
    """Join description parts, each ending with a full stop."""
    out = []
    for p in parts:
        p = " ".join(p.split())
        if p:
            out.append(p if p[-1] in ".!?)" else p + ".")
    return " ".join(out)


def doc_lines(text: str, indent: str) -> list[str]:
    text = " ".join(text.split()).replace("\\", "\\\\").replace('"""', "'''")
    wrapped = textwrap.wrap(text, width=92 - len(indent))
    if len(wrapped) == 1 and len(wrapped[0]) + len(indent) + 6 <= 100:
        return [f'{indent}"""{wrapped[0]}"""']
    return [f'{indent}"""{wrapped[0]}', *(indent + w for w in wrapped[1:]), f'{indent}"""']


def generate(merged: dict[str, Any], renames: dict[str, str]) -> str:
    enums = sorted(n for n, d in merged.items() if "enum" in d)
    models = sorted(n for n, d in merged.items() if "enum" not in d)
    names = [class_name(n) for n in merged]
    assert len(set(names)) == len(names), "class name collision"

    # attribute -> JSON name where to_pascal gets it wrong; an attribute whose JSON
    # name differs between definitions (``Id`` / ``id``) gets explicit aliases.
    spellings: dict[str, set[str]] = {}
    for n in models:
        for pname in merged[n].get("properties", {}):
            spellings.setdefault(snake(pname), set()).add(pname)
    aliases: dict[str, str] = {}
    explicit: set[tuple[str, str]] = set()
    for n in models:
        for pname in merged[n].get("properties", {}):
            attr = snake(pname)
            if default_alias(attr) == pname:
                continue
            if len(spellings[attr]) == 1:
                aliases[attr] = pname
            else:
                explicit.add((n, pname))

    out: list[str] = [
        "# GENERATED by scripts/gen_schema.py from aiohcs/schema/data/*.json -- do not edit.",
        "# Regenerate: python scripts/gen_schema.py",
        '"""Every definition of the HCS schema 2.x (SDK schema files 1809 to 21H2, merged).',
        "",
        "Class names are the schema's definition names without underscores",
        "(``Container_Memory`` -> ``ContainerMemory``); attributes are snake_case and",
        "the JSON names exactly the schema's (see ``ALIASES`` for the irregular ones).",
        "Every field is optional, as in the schema.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
        "from pydantic import Field",
        "",
        "from ._base import (",
        "    Guid,",
        "    HcsEnum,",
        "    HcsModel,",
        "    Int32,",
        "    Int64,",
        "    UInt8,",
        "    UInt16,",
        "    UInt32,",
        "    UInt64,",
        "    register_aliases,",
        ")",
        f"from ._rules import {', '.join(sorted(set(BASES.values())))}",
        "",
        "# Attribute name -> JSON name where PascalCase of the attribute is not the JSON name.",
        "ALIASES: dict[str, str] = {",
        *(f'    "{a}": "{j}",' for a, j in sorted(aliases.items())),
        "}",
        "register_aliases(ALIASES)",
        "",
        "# Definition names of older schema files that a newer file renamed.",
        "RENAMED: dict[str, str] = {",
        *(f'    "{o}": "{n}",' for o, n in sorted(renames.items())),
        "}",
        "",
    ]
    for n in enums:
        d = merged[n]
        out += ["", f"class {class_name(n)}(HcsEnum):"]
        desc = d.get("description", f"The ``{n}`` enumeration.")
        note = versions_note(d["x-versions"])
        out += doc_lines(sentence(desc, note), "    ")
        out.append("")
        for value, vs in d["enum"].items():
            out.append(f"    {member_name(value)} = {json.dumps(value)}")
            note = "" if vs == d["x-versions"] else versions_note(vs)
            if note:
                out += doc_lines(note, "    ")
        out.append("")
    for n in models:
        d = merged[n]
        out += ["", f"class {class_name(n)}({BASES.get(n, 'HcsModel')}):"]
        desc = d.get("description", f"The ``{n}`` object.")
        note = versions_note(d["x-versions"])
        extra = f"JSON: ``{n}``." if class_name(n) != n else ""
        out += doc_lines(sentence(desc, extra, note), "    ")
        props = d.get("properties", {})
        if props:
            out.append("")
        for pname, prop in props.items():
            attr = snake(pname)
            t = py_type(prop, merged)
            default = "None"
            if (n, pname) in explicit:
                default = f'Field(None, validation_alias="{pname}", serialization_alias="{pname}")'
            ann = t if t == "Any" else f"{t} | None"
            out.append(f"    {attr}: {ann} = {default}")
            vnote = (
                "" if prop["x-versions"] == d["x-versions"] else versions_note(prop["x-versions"])
            )
            text = sentence(prop.get("description", ""), vnote)
            if text:
                out += doc_lines(text, "    ")
        out.append("")
    out += [
        "",
        "# Schema definition name -> class (old names of renamed definitions included).",
        "DEFINITIONS: dict[str, type[HcsModel] | type[HcsEnum]] = {",
        *(f'    "{n}": {class_name(n)},' for n in sorted(merged)),
        *(f'    "{o}": {class_name(n)},' for o, n in sorted(renames.items())),
        "}",
        "",
        "__all__ = [",
        *(f'    "{c}",' for c in sorted([*names, "ALIASES", "DEFINITIONS", "RENAMED"])),
        "]",
        "",
    ]
    return "\n".join(out)


def render() -> str:
    merged, renames = merge(load())
    text = generate(merged, renames)
    ruff = [sys.executable, "-m", "ruff"]
    fixed = subprocess.run(
        [*ruff, "check", "--fix-only", "--quiet", "--stdin-filename", str(OUT), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return subprocess.run(
        [*ruff, "format", "--quiet", "--stdin-filename", str(OUT), "-"],
        input=fixed,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if the committed file is stale")
    args = ap.parse_args()
    text = render()
    if args.check:
        if OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run scripts/gen_schema.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
