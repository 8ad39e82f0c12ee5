"""Kubernetes and KServe manifests: valid against their schemas (offline) and keeping the secure defaults.

No cluster exists here: built-in kinds are checked with kubernetes-validate's bundled Kubernetes
schemas (strict: unknown fields are errors), KServe kinds with tests/schemas/kserve.json, derived
from the KServe SDK by scripts/kserve_schema.py.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from urllib.parse import urljoin

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml

from detector.metadata import ModelMetadata
from ops.torchserve_config import TorchServeConfig
from tests.conftest import REPO

KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")  # oldest and newest schemas kubernetes-validate ships
PLAIN = list(yaml.safe_load_all((REPO / "deploy" / "kubernetes" / "ai-detector.yaml").read_text()))
KSERVE = [yaml.safe_load((REPO / "deploy" / "kserve" / name).read_text())
          for name in ("servingruntime.yaml", "inferenceservice.yaml")]


def by_kind(kind: str) -> dict:
    return next(doc for doc in PLAIN if doc["kind"] == kind)


def kserve_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((REPO / "tests" / "schemas" / "kserve.json").read_text())
    bundled = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / "v1.37.0-local-strict"
    definitions = json.loads((bundled / "_definitions.json").read_text())
    registry = referencing.Registry().with_resource(
        urljoin(schema["$id"], "/api/_definitions.json"), referencing.Resource.from_contents(definitions, referencing.jsonschema.DRAFT7))
    return jsonschema.Draft202012Validator(schema, registry=registry)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_plain_manifests_are_valid_kubernetes(version: str) -> None:
    assert {doc["kind"] for doc in PLAIN} == {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
                                             "PodDisruptionBudget", "NetworkPolicy"}
    for doc in PLAIN:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_kubernetes_validator_catches_mistakes() -> None:
    broken = copy.deepcopy(by_kind("Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["resource"] = {}   # typo of "resources"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_kserve_manifests_are_valid_against_the_kserve_schema() -> None:
    validator = kserve_validator()
    for doc in KSERVE:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, errors


@pytest.mark.parametrize("edit", [
    lambda isvc: isvc["spec"]["predictor"]["model"].update(storageURI="pvc://x"),          # misspelt field
    lambda isvc: isvc["spec"]["predictor"].update(minReplicas="one"),                      # wrong type
    lambda isvc: isvc["spec"]["predictor"]["model"].pop("modelFormat"),                    # required field
    lambda isvc: isvc["spec"]["predictor"]["model"]["resources"].update(request={}),       # Kubernetes part
])
def test_the_kserve_schema_catches_mistakes(edit) -> None:
    broken = copy.deepcopy(KSERVE[1])
    edit(broken)
    assert list(kserve_validator().iter_errors(broken))


def test_inferenceservice_uses_the_runtime_and_the_kserve_envelope() -> None:
    runtime, isvc = KSERVE
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"] and model["protocolVersion"] == "v1"
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    container = runtime["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["AI_DETECTOR_TS_CONFIG"] == "/mnt/models/config/config.properties"
    assert env["AI_DETECTOR_MODEL_STORE"] == "/mnt/models/model-store"
    settings = TorchServeConfig.load(REPO / "deploy" / "kserve" / "config.properties")
    assert settings["service_envelope"] == "kserve" and settings["model_store"] == env["AI_DETECTOR_MODEL_STORE"]
    assert isvc["metadata"]["labels"]["networking.kserve.io/visibility"] == "cluster-local"


@pytest.mark.parametrize("text", [
    by_kind("ConfigMap")["data"]["config.properties"],
    (REPO / "deploy" / "kserve" / "config.properties").read_text(),
], ids=["kubernetes", "kserve"])
def test_cluster_configs_keep_the_control_plane_off_the_network(text: str) -> None:
    settings = TorchServeConfig.parse(text)
    assert settings["management_address"].startswith("http://127.0.0.1:")
    assert settings["grpc_inference_address"] == settings["grpc_management_address"] == "127.0.0.1"
    assert settings["enable_model_api"] == "false" and settings["install_py_dep_per_model"] == "false"
    assert "http" not in settings["allowed_urls"]
    assert list(settings.models["ai_detector"]) == [ModelMetadata.load(REPO / "model").version]


def test_pods_are_unprivileged_read_only_and_reachable_only_through_the_gateway() -> None:
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] and pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] and container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["model-store"]["readOnly"] and mounts["model-store"]["mountPath"] == "/app/model_store"
    assert {p["port"] for p in by_kind("Service")["spec"]["ports"]} == {8080}   # never management
    ingress = by_kind("NetworkPolicy")["spec"]["ingress"]
    assert sorted(rule["ports"][0]["port"] for rule in ingress) == [8080, 8082]
    assert by_kind("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == by_kind("Deployment")["metadata"]["name"]


def test_images_name_the_shipped_model_version() -> None:
    version = ModelMetadata.load(REPO / "model").version
    images = [by_kind("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"],
              KSERVE[0]["spec"]["containers"][0]["image"],
              yaml.safe_load((REPO / "docker-compose.yml").read_text())["x-detector"]["image"]]
    assert images == [f"ai-detector:{version}"] * 3
