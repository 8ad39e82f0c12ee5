"""Pack one TorchServe archive (.mar) per backend into the model store, with SHA-256 sums.

    python -m export.archive --artifacts build/artifacts --model-store model_store

Each archive holds the artifact, ``metadata.json``, the safetensors weights (for Grad-CAM
explanations and the fp32 fallback), ``selfcheck.safetensors`` (the reference answers each worker
replays at load), ``spectral.json`` where one was fitted (the frequency second opinion), the domain gate's
extractor and reference features where the model has one, the handler,
the ``handlers`` and ``detector`` packages it imports, and ``handlers/model-config.yaml``.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from detector.domain import GATE_FILES
from detector.metadata import METADATA_FILENAME, ModelMetadata
from detector.model import WEIGHTS_FILENAME
from detector.paths import REPO
from detector.selfcheck import SELFCHECK_FILENAME
from detector.spectral import SPECTRAL_FILENAME
from export.export import INT8_NAME, ONNX_NAME, TORCHSCRIPT_NAME

HANDLER = REPO / "handlers" / "ai_detector_handler.py"
MODEL_CONFIG = REPO / "handlers" / "model-config.yaml"
PACKAGES = ("detector", "handlers")
ARCHIVES = {"ai_detector": TORCHSCRIPT_NAME, "ai_detector_onnx": ONNX_NAME, "ai_detector_int8": INT8_NAME}
SUMS_NAME = "SHA256SUMS"


def stage_extra_files(stage: Path, metadata_path: Path) -> Path:
    """The archiver copies a folder's children into the archive root: stage the packages there,
    with the metadata and the safetensors weights beside it (explanations run the eager model)."""
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for package in PACKAGES:
        shutil.copytree(REPO / package, stage / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.yaml", HANDLER.name))
    shutil.copy2(metadata_path, stage / METADATA_FILENAME)
    shutil.copy2(metadata_path.parent / WEIGHTS_FILENAME, stage / WEIGHTS_FILENAME)
    for optional in (SPECTRAL_FILENAME, SELFCHECK_FILENAME, *GATE_FILES):   # present where export wrote them
        if (metadata_path.parent / optional).exists():
            shutil.copy2(metadata_path.parent / optional, stage / optional)
    return stage


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_archive(model_name: str, version: str, artifact: Path, extra_files: Path | None, model_store: Path,
                  file_name: str | None = None, handler: Path = HANDLER, config_file: Path | None = MODEL_CONFIG) -> Path:
    """One .mar: ``model_name`` at ``version`` serving ``artifact`` (its suffix picks the runtime).

    ``file_name`` (default ``<model_name>.mar``) lets two versions of one model share a store:
    TorchServe reads name and version from the archive's manifest, not from the file name.
    ``handler``/``extra_files``/``config_file`` default to this project's; the benchmark's stock
    baseline passes TorchServe-style ones.
    """
    with tempfile.TemporaryDirectory(dir=model_store) as staging:
        command = [
            str(Path(sys.executable).with_name("torch-model-archiver")),
            "--model-name", model_name, "--version", version,
            "--serialized-file", str(artifact), "--handler", str(handler),
            *(["--extra-files", str(extra_files)] if extra_files else []),
            *(["--config-file", str(config_file)] if config_file else []),
            "--export-path", staging,
        ]
        subprocess.run(command, check=True)
        archive = (Path(staging) / f"{model_name}.mar").replace(model_store / (file_name or f"{model_name}.mar"))
    print(f"[archive] {archive} ({archive.stat().st_size / 2**20:.1f} MiB)", file=sys.stderr)
    return archive


def build_archives(artifacts: Path, model_store: Path, stage_root: Path = REPO / "build" / "stage") -> list[Path]:
    """Run torch-model-archiver for each backend and record the archives' SHA-256 sums."""
    metadata_path = artifacts / METADATA_FILENAME
    version = ModelMetadata.load(metadata_path).version
    extra = stage_extra_files(stage_root, metadata_path)
    model_store.mkdir(parents=True, exist_ok=True)
    built = [build_archive(name, version, artifacts / artifact, extra, model_store) for name, artifact in ARCHIVES.items()]
    write_sums(model_store, built)
    return built


def write_sums(model_store: Path, archives: list[Path]) -> None:
    """Record the archives' SHA-256 sums; ``ops.server`` refuses to serve anything else."""
    (model_store / SUMS_NAME).write_text("".join(f"{sha256_file(p)}  {p.name}\n" for p in archives))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=Path("build/artifacts"))
    parser.add_argument("--model-store", type=Path, default=Path("model_store"))
    args = parser.parse_args(argv)
    build_archives(args.artifacts, args.model_store)


if __name__ == "__main__":
    main()
