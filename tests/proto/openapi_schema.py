"""Schemas of proto/openapi.json as plain JSON Schema (draft 4), for validating
real responses with python3-jsonschema.

OpenAPI 3.0 schemas are a dialect of draft 4: `nullable: true` stands for
adding "null" to the type, and references point into components/schemas.
validator(name) rewrites both so jsonschema can use the document as it is.
"""
import copy
import json
import os

import jsonschema

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPENAPI = os.path.join(ROOT, "proto", "openapi.json")
PREFIX = "#/components/schemas/"


def load(path=OPENAPI):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _convert(node):
    if isinstance(node, list):
        return [_convert(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "nullable":
            continue
        if key == "$ref" and isinstance(value, str) and value.startswith(PREFIX):
            value = "#/definitions/" + value[len(PREFIX):]
        out[key] = _convert(value)
    if node.get("nullable") is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = types + ["null"]
        if "enum" in out:
            out["enum"] = out["enum"] + [None]
    return out


def schema(name, doc=None):
    """The draft-4 schema of components/schemas/NAME, with every other
    component available under definitions."""
    doc = doc if doc is not None else load()
    defs = {k: _convert(copy.deepcopy(v)) for k, v in doc["components"]["schemas"].items()}
    if name not in defs:
        raise KeyError(name)
    return {"$schema": "http://json-schema.org/draft-04/schema#",
            "definitions": defs, "$ref": "#/definitions/" + name}


def validator(name, doc=None, cls=jsonschema.Draft4Validator):
    s = schema(name, doc)
    cls.check_schema(s)
    return cls(s)


def validate(name, instance, doc=None):
    """Raises jsonschema.ValidationError if instance does not match NAME.
    Checked as draft 4 (OpenAPI 3.0's base) and draft 7 alike, so the
    document means the same to validators of either draft."""
    validator(name, doc, jsonschema.Draft4Validator).validate(instance)
    validator(name, doc, jsonschema.Draft7Validator).validate(instance)
