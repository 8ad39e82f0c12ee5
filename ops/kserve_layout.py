"""Lay out the built archives the way KServe's TorchServe predictor reads its storageUri.

    python -m ops.kserve_layout --model-store model_store --out build/kserve

Writes ``OUT/config/config.properties`` (deploy/kserve/config.properties) and ``OUT/model-store/``
holding the archives that config loads, with their SHA-256 sums (verified when the container starts).
Copy OUT to the volume or bucket named in deploy/kserve/inferenceservice.yaml.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from detector.paths import REPO
from export.archive import write_sums
from ops.server import verify_archives
from ops.torchserve_config import TorchServeConfig

KSERVE_CONFIG = REPO / "deploy" / "kserve" / "config.properties"


def build_layout(model_store: Path, out: Path, config: Path = KSERVE_CONFIG) -> Path:
    """Copy the config and the archives it loads (checked against the store's sums first) under ``out``."""
    verify_archives(model_store)
    if out.exists():
        shutil.rmtree(out)
    (out / "config").mkdir(parents=True)
    shutil.copy2(config, out / "config" / "config.properties")
    store = out / "model-store"
    store.mkdir()
    archives = [Path(shutil.copy2(model_store / f"{name}.mar", store)) for name in TorchServeConfig.load(config).loaded_models]
    write_sums(store, archives)
    print(f"[kserve] {out}: config/config.properties + {', '.join(a.name for a in archives)}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-store", type=Path, default=REPO / "model_store")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "kserve")
    args = parser.parse_args(argv)
    build_layout(args.model_store, args.out)


if __name__ == "__main__":
    main()
