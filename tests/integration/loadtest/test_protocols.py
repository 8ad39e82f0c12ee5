"""The protocol cost benchmark on a tiny budget: every protocol answers on its own server and the report gives each
one's figures against REST's, measured in the same run."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.protocols import main
from tests.integration.conftest import free_ports


def test_protocols_benchmark_reports_every_protocol_against_rest(tmp_path: Path, artifacts_dir: Path) -> None:
    ports = ",".join(str(p) for p in free_ports(5))
    main(["--requests", "16", "--rounds", "2", "--ports", ports, "--out", str(tmp_path)])
    report = json.loads((tmp_path / "protocols.json").read_text())
    assert set(report["bare_ms_per_request"]) == {"rest", "oip_json", "oip_binary"}
    assert all(row["ms"] > 0 and row["protocol_us"] > 0 for row in report["bare_ms_per_request"].values())
    assert set(report["server"]) == {"rest", "oip_json", "oip_binary", "oip_grpc"}
    assert all(row["p50_ms_1_user"] > 0 for row in report["server"].values())
    assert report["server"]["oip_grpc"]["answers_per_s_8_users"] > 0 and "oip_binary" in report["server"]
    text = (tmp_path / "protocols.md").read_text()
    assert report["cpu"]["model"] in text and text.count("| Open Inference") == 3
