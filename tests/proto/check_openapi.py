#!/usr/bin/python3
"""Checks proto/openapi.json: that it is OpenAPI-shaped, that every reference
resolves, that its error codes are exactly proto.h's table with the right
statuses, that every component is a valid JSON Schema, and that bodies the C
renderers really produce validate against it (and broken ones do not).

usage: /usr/bin/python3 tests/proto/check_openapi.py [TEST_RENDER_BINARY]
The binary (default build/tests/proto/test_render) writes its rendered bodies
into $PROTO_SAMPLE_DIR.
"""
import copy
import os
import re
import subprocess
import sys
import tempfile

import jsonschema

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openapi_schema as oas  # noqa: E402

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def walk(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield path + "/" + k, k, v
            yield from walk(v, path + "/" + k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, "%s/%d" % (path, i))


def check_shape(doc):
    check(str(doc.get("openapi", "")).startswith("3.0."), "openapi version is not 3.0.x")
    check(isinstance(doc.get("info", {}).get("title"), str), "info.title missing")
    check(isinstance(doc.get("info", {}).get("version"), str), "info.version missing")
    paths = doc.get("paths", {})
    for p in ["/generate", "/v1/models", "/v1/models/{name}", "/healthz", "/readyz", "/metrics",
              "/openapi.json", "/"]:
        check(p in paths, "path %s missing" % p)
    for p, item in paths.items():
        for method, op in item.items():
            check(method in ("get", "post", "put", "delete", "patch", "head", "options"),
                  "%s: unknown method %s" % (p, method))
            check("responses" in op and op["responses"], "%s %s: no responses" % (method, p))
            for status, resp in op.get("responses", {}).items():
                check(re.fullmatch(r"[1-5]\d\d|default", status), "%s: bad status %s" % (p, status))
                check("description" in resp, "%s %s: response without description" % (p, status))
    # every $ref resolves inside the document
    for where, key, value in walk(doc):
        if key == "$ref":
            node = doc
            for part in value.lstrip("#/").split("/"):
                node = node.get(part) if isinstance(node, dict) else None
            check(node is not None, "%s: unresolved $ref %s" % (where, value))


def check_error_table(doc):
    """The Error schema's codes and the statuses used must be proto.h's table."""
    with open(os.path.join(oas.ROOT, "proto", "proto.h"), encoding="utf-8") as f:
        table = dict((code, int(st)) for st, code in
                     re.findall(r'X\(\s*[A-Z_]+,\s*(\d+),\s*"([a-z_]+)"\)', f.read()))
    check(len(table) >= 12, "could not read PROTO_ERRORS from proto.h")
    enum = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    check(sorted(enum) == sorted(table), "Error.code enum %s != proto.h %s" % (enum, sorted(table)))
    gen = doc["paths"]["/generate"]["post"]["responses"]
    # 499 (cancelled) is never sent; 409 (conflict) is the model endpoints' own
    statuses = set(table.values()) - {499, 409}
    for st in statuses:
        check(str(st) in gen, "/generate does not document status %d" % st)
    for st, resp in gen.items():
        if st.startswith(("4", "5")):
            ref = resp["content"]["application/json"]["schema"].get("$ref", "")
            check(ref.endswith("/Error"), "/generate %s is not an Error body" % st)


def check_schemas(doc):
    for name in doc["components"]["schemas"]:
        for cls in (jsonschema.Draft4Validator, jsonschema.Draft7Validator):
            try:
                oas.validator(name, doc, cls)
            except jsonschema.SchemaError as e:
                check(False, "schema %s is not valid %s: %s" % (name, cls.__name__, e.message))
    # draft-4-only forms (boolean exclusiveMinimum/Maximum) mean something else in draft 7
    for where, key, value in walk(doc):
        if key in ("exclusiveMinimum", "exclusiveMaximum"):
            check(not isinstance(value, bool), "%s: boolean %s is not portable" % (where, key))


def check_request_bounds(doc):
    """Every number a request carries is bounded in the document, and the
    bounds that are proto.h constants say the same as proto.h."""
    with open(os.path.join(oas.ROOT, "proto", "proto.h"), encoding="utf-8") as f:
        header = f.read()

    def const(name):
        m = re.search(r"#define %s \(?(?:INT64_C\()?(\d+)(?: << (\d+))?" % name, header)
        check(m is not None, "proto.h has no %s" % name)
        if not m:
            return None
        return int(m.group(1)) << int(m.group(2) or 0)

    props = doc["components"]["schemas"]["GenerateRequest"]["properties"]
    for where, key, node in walk(props):
        if isinstance(node, dict) and node.get("type") in ("integer", "number"):
            check("minimum" in node and "maximum" in node,
                  "GenerateRequest%s: a number without minimum and maximum" % where)
        if isinstance(node, dict) and node.get("type") == "array":
            check("maxItems" in node, "GenerateRequest%s: an array without maxItems" % where)
    side, cells = const("PROTO_MAX_SIDE"), const("PROTO_MAX_CELLS")
    for name in ("height", "width"):
        check(props[name]["maximum"] == side, "%s maximum is not PROTO_MAX_SIDE" % name)
    check(props["given"]["maxItems"] == side and props["given"]["items"]["maxItems"] == side,
          "given maxItems is not PROTO_MAX_SIDE")
    check(props["text"]["maxItems"] == side and props["text"]["items"]["maxLength"] == side,
          "text maxItems/maxLength is not PROTO_MAX_SIDE")
    check(str(cells) in props["given"]["description"] and str(cells) in props["text"]["description"],
          "given/text do not state PROTO_MAX_CELLS")
    check(props["deadline_ms"]["maximum"] == const("PROTO_MAX_DEADLINE_MS"),
          "deadline_ms maximum is not PROTO_MAX_DEADLINE_MS")
    check(props["temperature"]["maximum"] == 1000, "temperature maximum is not 1000")
    # order: exactly the engine's names, in eng_order's order
    with open(os.path.join(oas.ROOT, "engine", "order.c"), encoding="utf-8") as f:
        names = re.findall(r'\[ENG_ORDER_[A-Z]+\] = "([a-z]+)"', f.read())
    check(len(names) >= 3 and props["order"]["enum"] == names,
          "order enum %s is not engine/order.c's %s" % (props["order"]["enum"], names))
    check(props["remask"]["maximum"] == 1 and props["remask"]["not"] == {"enum": [1]},
          "remask is not bounded to [0, 1)")


SAMPLES = {"result": "GenerateResult", "sse_iteration": "IterationEvent",
           "sse_iteration_large": "IterationEvent", "sse_done": "DoneEvent",
           "sse_error": "Error", "error": "Error", "models": "ModelList", "model": "Model",
           "healthz": "Status", "readyz": "Status"}


def must_fail(name, instance, what, doc):
    try:
        oas.validate(name, instance, doc)
        check(False, "%s: a broken body validated (%s)" % (name, what))
    except jsonschema.ValidationError:
        pass


def check_samples(doc, binary):
    import json
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, PROTO_SAMPLE_DIR=d)
        r = subprocess.run([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        check(r.returncode == 0, "%s failed:\n%s" % (binary, r.stdout.decode(errors="replace")))
        bodies = {}
        for stem, schema in SAMPLES.items():
            path = os.path.join(d, stem + ".json")
            if not os.path.exists(path):
                check(False, "%s did not write %s" % (binary, stem))
                continue
            with open(path, "rb") as f:
                raw = f.read()
            try:
                body = json.loads(raw.decode("utf-8"))  # strict UTF-8
            except (UnicodeDecodeError, ValueError) as e:
                check(False, "%s is not UTF-8 JSON: %s" % (stem, e))
                continue
            try:
                oas.validate(schema, body, doc)
            except jsonschema.ValidationError as e:
                check(False, "%s does not match %s: %s at %s" % (stem, schema, e.message,
                                                                  list(e.absolute_path)))
            bodies[stem] = body
    # the schemas are not vacuous: each broken body is refused
    if "result" in bodies:
        b = copy.deepcopy(bodies["result"]); del b["grid"]
        must_fail("GenerateResult", b, "no grid", doc)
        b = copy.deepcopy(bodies["result"]); b["grid"][0][0] = "x"
        must_fail("GenerateResult", b, "string cell", doc)
        b = copy.deepcopy(bodies["result"]); b["extra"] = 1
        must_fail("GenerateResult", b, "unknown key", doc)
        b = copy.deepcopy(bodies["result"]); b["timings"]["total_ms"] = -1
        must_fail("GenerateResult", b, "negative timing", doc)
        b = copy.deepcopy(bodies["result"]); b["order"] = "lifo"
        must_fail("GenerateResult", b, "unknown order", doc)
        b = copy.deepcopy(bodies["result"]); del b["remask"]
        must_fail("GenerateResult", b, "no remask", doc)
    if "error" in bodies:
        b = copy.deepcopy(bodies["error"]); b["error"]["code"] = "teapot"
        must_fail("Error", b, "unknown code", doc)
    if "models" in bodies:
        b = copy.deepcopy(bodies["models"]); b["data"][0]["hparams"]["window"][0] = "local"
        must_fail("ModelList", b, "bad window", doc)
    # requests: what the parser takes, and some of what it refuses by type
    good = [{"height": 2, "width": 3}, {"given": [[1, None], [2]], "seed": 5, "stream": True},
            {"height": 1, "width": 1, "top_p": 0.5}, {"height": 1, "width": 1, "top_p": 1},
            {"text": ["a_b"], "open": "_", "temperature": 0, "top_p": 1, "model": None},
            {"text": ["a\U0001F600b"], "open": "\U0001F600", "deadline_ms": 86400000},
            {"height": 1, "width": 1, "order": "margin", "remask": 0},
            {"height": 1, "width": 1, "order": "raster", "remask": 0.999}]
    for g in good:
        try:
            oas.validate("GenerateRequest", g, doc)
        except jsonschema.ValidationError as e:
            check(False, "GenerateRequest refuses %s: %s" % (g, e.message))
    for b in [{"height": "2"}, {"temprature": 1}, {"given": [[1.5]]}, {"top_p": 0}, {"top_p": 1.5},
              {"stream": 1}, {"seed": -1}, {"deadline_ms": 86400001}, {"open": "\u0000"},
              {"open": "\u0085"}, {"open": "__"}, {"height": 65537}, {"iterations": 0},
              {"order": "random"}, {"order": 1}, {"remask": 1}, {"remask": -0.5}]:
        must_fail("GenerateRequest", b, json.dumps(b), doc)


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(oas.ROOT, "build", "tests", "proto", "test_render")
    doc = oas.load()
    check_shape(doc)
    check_error_table(doc)
    check_schemas(doc)
    check_request_bounds(doc)
    check_samples(doc, binary)
    for f in failures:
        print("FAIL:", f)
    print("check_openapi: %d schemas, %d paths, %s" % (
        len(doc["components"]["schemas"]), len(doc["paths"]),
        "%d failure(s)" % len(failures) if failures else "ok"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
