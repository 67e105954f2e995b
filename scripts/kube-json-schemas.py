#!/usr/bin/env python3
"""Writes strict, standalone JSON Schemas that kubeconform validates Kubernetes objects against
offline, one file per kind, named as kubeconform's schema-location template
`{{ .ResourceKind }}{{ .KindSuffix }}.json` expects (e.g. `deployment-apps-v1.json`).

  kube-json-schemas.py OUT_DIR [--crd CRD.json]... [--openapi swagger.json] [--scan FILE]...

--crd       a CustomResourceDefinition, or a List of them, as JSON (e.g. the output of
            `kubectl patch --local -f crd.yaml --type merge -p '{}' -o json`): one schema per
            served version, from its openAPIV3Schema.
--openapi   the Kubernetes OpenAPI v2 document (api/openapi-spec/swagger.json of the
            k8s.io/kubernetes source): schemas of the built-in kinds named in the --scan files.
--scan      YAML files whose top-level apiVersion/kind pairs say which built-in kinds to write.

"Strict" means what the API server's field validation means: an object with declared
properties has no others (unless x-kubernetes-preserve-unknown-fields). `nullable`,
`x-kubernetes-int-or-string`, Quantity and IntOrString become their JSON Schema equivalents.
CEL rules (x-kubernetes-validations) cannot be checked offline and are left out.

Exits 1 when a CRD's schema has an enum value that is not of the schema's type as the API
server reads it (e.g. an unquoted `no`, which a YAML 1.1 reader takes for `false`).
Only the Python standard library is used. Prints one line per schema written.
"""

import argparse
import copy
import json
import os
import re
import sys

# Definitions of the Kubernetes OpenAPI document whose declared type is narrower than what the
# API server accepts.
OPENAPI_OVERRIDES = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "anyOf": [{"type": "string"}, {"type": "integer"}]
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "anyOf": [{"type": "string"}, {"type": "number"}]
    },
}


def kind_file_name(api_version, kind):
    """The file name kubeconform's `{{ .ResourceKind }}{{ .KindSuffix }}.json` gives a kind."""
    parts = api_version.split("/")
    suffix = "-" + parts[0].split(".")[0].lower()
    if len(parts) > 1:
        suffix += "-" + parts[1].lower()
    return kind.lower() + suffix + ".json"


JSON_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def enum_problems(schema, path):
    """Enum values of a schema that do not have the schema's type, as the API server reads
    them (a YAML 1.1 reader turns unquoted `no`, `yes`, `on`, `off` into booleans)."""
    declared = schema.get("type")
    check = JSON_TYPES.get(declared)
    if check is None:
        return []
    return [
        f"{path}.enum: {json.dumps(value)} is not of type {declared}"
        for value in schema.get("enum", [])
        if not check(value) and not (value is None and schema.get("nullable"))
    ]


def strict_structural(schema, path="", problems=None):
    """Converts a CRD's structural schema (OpenAPI v3 subset) to strict JSON Schema; appends
    what the API server would refuse or misread in it to `problems`."""
    if not isinstance(schema, dict):
        return schema
    if problems is None:
        problems = []
    problems += enum_problems(schema, path or ".")
    out = {}
    for key, value in schema.items():
        if key == "x-kubernetes-validations":
            continue
        if key == "properties":
            out[key] = {
                name: strict_structural(sub, f"{path}.{name}", problems)
                for name, sub in value.items()
            }
        elif key in ("items", "additionalProperties", "not"):
            out[key] = strict_structural(value, f"{path}.{key}", problems)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [
                strict_structural(sub, f"{path}.{key}[{i}]", problems)
                for i, sub in enumerate(value)
            ]
        else:
            out[key] = copy.deepcopy(value)
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserve = out.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    if out.pop("nullable", False):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        elif "anyOf" in out:
            out["anyOf"] = out["anyOf"] + [{"type": "null"}]
        if "enum" in out:
            out["enum"] = out["enum"] + [None]
    return out


def expand_openapi(schema, definitions, stack):
    """Inlines every $ref of an OpenAPI v2 schema; a recursive reference allows anything."""
    if isinstance(schema, list):
        return [expand_openapi(sub, definitions, stack) for sub in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        if name in stack:
            return {}
        if name in OPENAPI_OVERRIDES:
            return copy.deepcopy(OPENAPI_OVERRIDES[name])
        if name not in definitions:
            raise SystemExit(f"kube-json-schemas: unknown OpenAPI reference {ref}")
        return expand_openapi(definitions[name], definitions, stack + (name,))
    out = {}
    for key, value in schema.items():
        if key in ("description", "x-kubernetes-group-version-kind"):
            continue
        if key == "properties":
            out[key] = {n: expand_openapi(s, definitions, stack) for n, s in value.items()}
        elif key in ("items", "additionalProperties", "allOf", "anyOf", "oneOf"):
            out[key] = expand_openapi(value, definitions, stack)
        else:
            out[key] = copy.deepcopy(value)
    if out.get("format") == "int-or-string":
        return copy.deepcopy(OPENAPI_OVERRIDES["io.k8s.apimachinery.pkg.util.intstr.IntOrString"])
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit(f"kube-json-schemas: cannot read {path}: {e}")


def object_meta_schema(definitions):
    if definitions is None:
        return {"type": "object"}
    ref = {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    return expand_openapi(ref, definitions, ())


def crd_schemas(document, definitions, problems):
    """(file name, schema) of every served version of the CRDs in a JSON document; appends
    the problems found in their schemas to `problems`."""
    items = document.get("items", [document]) if document.get("kind") == "List" else [document]
    for crd in items:
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd.get("spec", {})
        group, kind = spec.get("group"), spec.get("names", {}).get("kind")
        for version in spec.get("versions", []):
            v3 = version.get("schema", {}).get("openAPIV3Schema")
            if not version.get("served", False) or v3 is None:
                continue
            api_version = f"{group}/{version['name']}"
            where = f"{crd.get('metadata', {}).get('name')} {version['name']} openAPIV3Schema"
            found = []
            schema = strict_structural(v3, "", found)
            problems += [f"{where} {p}" for p in found]
            properties = schema.setdefault("properties", {})
            properties["apiVersion"] = {"type": "string", "enum": [api_version]}
            properties["kind"] = {"type": "string", "enum": [kind]}
            properties["metadata"] = object_meta_schema(definitions)
            schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind"})
            schema["additionalProperties"] = False
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            yield kind_file_name(api_version, kind), schema


TOP_LEVEL = re.compile(r"^(apiVersion|kind):\s*[\"']?([^\s\"'#]+)")


def scanned_kinds(paths):
    """The top-level (apiVersion, kind) pairs of the YAML documents in the files."""
    found = set()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for document in re.split(r"(?m)^---", text):
            fields = {}
            for line in document.splitlines():
                m = TOP_LEVEL.match(line)
                if m:
                    fields.setdefault(m.group(1), m.group(2))
            if "apiVersion" in fields and "kind" in fields:
                found.add((fields["apiVersion"], fields["kind"]))
    return found


def builtin_schemas(definitions, wanted):
    """(file name, schema) of the built-in kinds among `wanted` (apiVersion, kind) pairs."""
    for name, definition in sorted(definitions.items()):
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            kind = gvk.get("kind")
            if name.rsplit(".", 1)[-1] != kind:
                continue
            group, version = gvk.get("group", ""), gvk.get("version")
            api_version = f"{group}/{version}" if group else version
            if (api_version, kind) not in wanted:
                continue
            schema = expand_openapi(definition, definitions, (name,))
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            yield kind_file_name(api_version, kind), schema


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--crd", action="append", default=[])
    parser.add_argument("--openapi")
    parser.add_argument("--scan", action="append", default=[])
    args = parser.parse_args()

    definitions = load_json(args.openapi)["definitions"] if args.openapi else None
    os.makedirs(args.out_dir, exist_ok=True)
    written = []
    problems = []
    for path in args.crd:
        written += crd_schemas(load_json(path), definitions, problems)
    if definitions is not None:
        written += builtin_schemas(definitions, scanned_kinds(args.scan))
    for file_name, schema in written:
        with open(os.path.join(args.out_dir, file_name), "w", encoding="utf-8") as f:
            json.dump(schema, f, separators=(",", ":"))
        print(f"schema {file_name}")
    for problem in problems:
        print(f"kube-json-schemas: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
