"""The classification CLI against a real TorchServe: files and folders in, table, CSV, JSON and heat-maps out."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ops.classify import collect, main
from tests.integration.conftest import server  # noqa: F401  (the shared real TorchServe)


@pytest.fixture()
def image_tree(tmp_path: Path, cifake_images) -> Path:
    (tmp_path / "album" / "nested").mkdir(parents=True)
    for index, (truth, data) in enumerate(cifake_images[:3] + cifake_images[-3:]):
        (tmp_path / "album" / f"{index}_{truth}.jpg").write_bytes(data)
    (tmp_path / "album" / "nested" / "deep.jpg").write_bytes(cifake_images[5][1])
    (tmp_path / "album" / "notes.txt").write_text("not an image, and not picked from a folder")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return tmp_path


def test_collect_takes_images_from_folders_and_files_as_given(image_tree: Path) -> None:
    assert len(collect([image_tree / "album"], recursive=False)) == 6
    assert len(collect([image_tree / "album"], recursive=True)) == 7
    assert collect([image_tree / "broken.png"], recursive=False) == [image_tree / "broken.png"]
    with pytest.raises(FileNotFoundError):
        collect([image_tree / "missing"], recursive=False)


def test_cli_classifies_a_folder_and_reports_a_bad_file(server, image_tree: Path, capsys) -> None:  # noqa: F811
    client, run_dir = server
    out_csv, out_json, heatmaps = image_tree / "r.csv", image_tree / "r.json", image_tree / "heat"
    status = main([str(image_tree / "album"), str(image_tree / "broken.png"), "--url", client.inference_url,
                   "--key-file", str(run_dir / "key_file.json"), "--csv", str(out_csv), "--json", str(out_json),
                   "--explain-dir", str(heatmaps)])
    printed = capsys.readouterr().out
    assert status == 1 and "7 files:" in printed and "1 failed" in printed and "broken.png" in printed
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 7 and [r["path"] for r in rows] == [r["path"] for r in json.loads(out_json.read_text())]
    good = [r for r in rows if not r["error"]]
    assert len(good) == 6 and all(abs(float(r["p_real"]) + float(r["p_fake"]) - 1) < 1e-5 for r in good)
    assert sum(Path(r["path"]).stem.split("_")[1] == r["label"] for r in good) >= 5   # file names carry the truth
    assert next(r for r in rows if r["error"])["error"].startswith("400")
    assert len(list(heatmaps.glob("*.gradcam.png"))) == 6


def test_cli_without_a_key_file_says_so(tmp_path: Path, image_tree: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main([str(image_tree / "album"), "--key-file", str(tmp_path / "none.json")])
    assert "no TorchServe key file" in capsys.readouterr().err
