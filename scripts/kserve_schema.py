"""Derive JSON schemas for KServe's InferenceService and ServingRuntime from the KServe SDK wheel.

    python3 -m pip download --no-deps kserve==0.21.0 -d /tmp/kserve
    .venv/bin/python scripts/kserve_schema.py /tmp/kserve/kserve-0.21.0-py3-none-any.whl > tests/schemas/kserve.json

No KServe cluster or CRD download is possible offline, and the SDK cannot be installed beside
TorchServe (its pins clash), so this reads the SDK's generated model classes without importing
them: ``openapi_types`` (field types), ``attribute_map`` (JSON names) and the setters that refuse
``None`` (required fields). Kubernetes types (V1Container, V1ObjectMeta, ...) are left as
references into kubernetes-validate's bundled Kubernetes schema, which the tests resolve.
Unknown fields are errors (``additionalProperties: false``), as with ``kubectl --validate=strict``.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import zipfile
from typing import Any

ROOTS = {"V1beta1InferenceService": "serving.kserve.io/v1beta1", "V1alpha1ServingRuntime": "serving.kserve.io/v1alpha1"}
K8S_DEFINITIONS = "/api/_definitions.json#/$defs/"
PRIMITIVES = {"str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
              "bool": {"type": "boolean"}, "object": {}, "datetime": {"type": "string"}, "date": {"type": "string"}}
# SDK names of Kubernetes types -> their definition names (the SDK drops the API group)
K8S_GROUPS = {"V1ObjectMeta": "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
              "V1Condition": "io.k8s.apimachinery.pkg.apis.meta.v1.Condition",
              "V1LabelSelector": "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"}


def read_models(wheel: str) -> dict[str, dict[str, Any]]:
    """SDK class name -> {"types": {attr: type}, "names": {attr: json}, "required": {attr}} for every model."""
    models = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not re.match(r"kserve/models/v\d\w+\.py$", name):
                continue
            source = archive.read(name).decode()
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.ClassDef):
                    fields = {t.targets[0].id: ast.literal_eval(t.value) for t in node.body
                              if isinstance(t, ast.Assign) and isinstance(t.targets[0], ast.Name)
                              and t.targets[0].id in ("openapi_types", "attribute_map")}
                    required = set(re.findall(r"Invalid value for `(\w+)`, must not be `None`", source))
                    models[node.name] = {"types": fields["openapi_types"], "names": fields["attribute_map"],
                                         "required": required}
    return models


def k8s_reference(type_name: str) -> dict[str, str]:
    if type_name in K8S_GROUPS:
        return {"$ref": K8S_DEFINITIONS + K8S_GROUPS[type_name]}
    qualified = re.fullmatch(r"K8sIoApi([A-Z][a-z]+)(V\d+(?:alpha\d+|beta\d+)?)(\w+)", type_name)  # K8sIoApiAppsV1...
    if qualified:
        group, version, kind = qualified.groups()
        return {"$ref": f"{K8S_DEFINITIONS}io.k8s.api.{group.lower()}.{version.lower()}.{kind}"}
    match = re.fullmatch(r"V(\d+)((?:alpha|beta)\d+)?(\w+)", type_name)
    if not match:
        raise ValueError(f"unknown type {type_name}")
    version = f"v{match.group(1)}{match.group(2) or ''}"
    return {"$ref": f"{K8S_DEFINITIONS}io.k8s.api.core.{version}.{match.group(3)}"}


def type_schema(type_name: str, models: dict[str, Any], needed: set[str]) -> dict[str, Any]:
    if type_name in PRIMITIVES:
        return PRIMITIVES[type_name]
    if type_name.startswith("list["):
        return {"type": "array", "items": type_schema(type_name[5:-1], models, needed)}
    if type_name.startswith("dict("):
        value = type_name[5:-1].split(",", 1)[1].strip()
        return {"type": "object", "additionalProperties": type_schema(value, models, needed)}
    if type_name in models:
        needed.add(type_name)
        return {"$ref": f"#/$defs/{type_name}"}
    if re.match(r"V1(alpha|beta)1", type_name):  # a KServe type the SDK does not generate: left open
        print(f"[kserve-schema] {type_name} is not in the SDK: accepted as any object", file=sys.stderr)
        return {"type": "object"}
    if type_name == "ResourceQuantity":
        return {"$ref": K8S_DEFINITIONS + "io.k8s.apimachinery.pkg.api.resource.Quantity"}
    return k8s_reference(type_name)


def build_schema(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    definitions: dict[str, Any] = {}
    pending = set(ROOTS)
    while pending:
        name = pending.pop()
        model, needed = models[name], set()
        types = {attr: kind for attr, kind in model["types"].items() if not (name in ROOTS and attr == "status")}
        definitions[name] = {
            "type": "object",
            "properties": {model["names"][attr]: type_schema(kind, models, needed) for attr, kind in types.items()},
            "required": sorted(model["names"][attr] for attr in model["required"]),
            "additionalProperties": False,
        }
        pending |= needed - set(definitions)
    for root, api_version in ROOTS.items():
        definitions[root]["properties"]["apiVersion"] = {"const": api_version}
        definitions[root]["properties"]["kind"] = {"const": root.removeprefix("V1beta1").removeprefix("V1alpha1")}
        definitions[root]["properties"]["status"] = {"type": "object"}  # written by the controller, not by users
        definitions[root]["required"] = ["apiVersion", "kind", "metadata", "spec"]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://kserve.local/kserve.json",
            "oneOf": [{"$ref": f"#/$defs/{root}"} for root in ROOTS], "$defs": dict(sorted(definitions.items()))}


if __name__ == "__main__":
    json.dump(build_schema(read_models(sys.argv[1])), sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")
