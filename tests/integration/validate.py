#!/usr/bin/python3
"""Validates daemon responses against the schemas of proto/openapi.json.

    validate.py response PATH METHOD STATUS FILE   a JSON body of that response
    validate.py sse FILE                           a Server-Sent Events stream
    validate.py list FILE                          one of the above per line of FILE

The sse mode checks the framing (every event is `event:` + `data:` lines and
a blank line; `:` comment lines may appear anywhere), validates each data
against IterationEvent, DoneEvent or Error, checks that iterations count
1, 2, ... and that the stream ends with exactly one done or error event, and
prints `EVENTS ITERATIONS LAST` (LAST: done or error).

OpenAPI 3.0 schemas are JSON Schema with a few differences; the one used
here, `nullable: true`, is rewritten into a type list before validating.
Exits 1 with a message on the first violation (list: after checking every
line, printing one verdict per line).
"""

import json
import shlex
import sys

import jsonschema

SPEC_PATH = "proto/openapi.json"


class Invalid(Exception):
    pass


def fail(msg):
    raise Invalid(msg)


def openapi_to_jsonschema(node):
    if isinstance(node, list):
        return [openapi_to_jsonschema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: openapi_to_jsonschema(v) for k, v in node.items()}
    if out.pop("nullable", False):
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
        elif "enum" in out:
            out["enum"] = list(out["enum"]) + [None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def load_spec():
    with open(SPEC_PATH) as f:
        return openapi_to_jsonschema(json.load(f))


def validator_for(spec, schema):
    # References are "#/components/schemas/X": resolve them in the spec itself.
    root = dict(schema)
    root["components"] = spec["components"]
    return jsonschema.Draft7Validator(root)


def check(spec, schema, doc, what):
    errors = sorted(validator_for(spec, schema).iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        path = "/".join(str(p) for p in e.path)
        fail(f"{what}: {e.message} (at /{path})")


def response(spec, path, method, status, file):
    op = spec["paths"][path][method.lower()]
    resp = op["responses"].get(str(status))
    if resp is None:
        fail(f"{method} {path}: status {status} is not documented")
    schema = resp["content"]["application/json"]["schema"]
    with open(file, "rb") as f:
        raw = f.read()
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"{method} {path} {status}: not UTF-8 JSON: {e}")
    check(spec, schema, doc, f"{method} {path} {status}")
    return "valid"


def sse(spec, file):
    with open(file, "rb") as f:
        text = f.read().decode("utf-8")
    schemas = {
        "iteration": {"$ref": "#/components/schemas/IterationEvent"},
        "done": {"$ref": "#/components/schemas/DoneEvent"},
        "error": {"$ref": "#/components/schemas/Error"},
    }
    if not text.endswith("\n\n"):
        fail("sse: the stream does not end with a blank line")
    events, iterations, last = 0, 0, None
    for block in text.split("\n\n")[:-1]:
        lines = [l for l in block.split("\n") if not l.startswith(":")]
        if not lines:
            continue  # a keep-alive comment alone
        if last is not None:
            fail(f"sse: an event after the final '{last}' event")
        if len(lines) != 2 or not lines[0].startswith("event: ") \
                or not lines[1].startswith("data: "):
            fail(f"sse: malformed event: {block[:200]!r}")
        name, data = lines[0][7:], json.loads(lines[1][6:])
        if name not in schemas:
            fail(f"sse: unknown event '{name}'")
        check(spec, schemas[name], data, f"sse event {events + 1} ({name})")
        events += 1
        if name == "iteration":
            iterations += 1
            if data["iteration"] != iterations:
                fail(f"sse: iteration {data['iteration']} where {iterations} was due")
        else:
            last = name
    if last is None:
        fail("sse: the stream has no final done or error event")
    return f"{events} {iterations} {last}"


def run(spec, args):
    if len(args) == 5 and args[0] == "response":
        return response(spec, args[1], args[2], int(args[3]), args[4])
    if len(args) == 2 and args[0] == "sse":
        return sse(spec, args[1])
    fail("usage: " + __doc__)


def main():
    spec = load_spec()
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "list":
        bad = 0
        with open(args[1]) as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    print("ok:", line.strip(), "->", run(spec, shlex.split(line)))
                except (Invalid, OSError, KeyError, ValueError) as e:
                    print("FAIL:", line.strip(), "->", e)
                    bad += 1
        sys.exit(1 if bad else 0)
    try:
        print(run(spec, args))
    except Invalid as e:
        sys.exit(str(e))


if __name__ == "__main__":
    main()
