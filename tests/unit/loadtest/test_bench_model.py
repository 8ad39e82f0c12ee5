"""The bare-model benchmark says what is missing instead of printing an empty table."""

from __future__ import annotations

from pathlib import Path

import pytest

from export.variants import FORMATS   # backend name -> artifact file, as bench_model reads them
from loadtest.bench_model import available_backends


def test_only_built_backends_are_measured(tmp_path: Path) -> None:
    (tmp_path / FORMATS["onnx"]).write_bytes(b"")
    assert available_backends(tmp_path, "torchscript,onnx") == ["onnx"]


def test_nothing_built_is_an_error_that_names_make_build(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="run make build"):
        available_backends(tmp_path, "int8")


def test_an_unknown_backend_is_an_error_that_lists_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / FORMATS["onnx"]).write_bytes(b"")
    with pytest.raises(SystemExit, match="unknown backend.*int9.*onnx"):
        available_backends(tmp_path, "onnx,int9")
