"""The 10-minute soak (`make soak`, excluded from the default run): steady Locust load plus the
retrying client on a fresh server; every request answered, worker memory growth under 10 %."""

from __future__ import annotations

import os

import pytest

from loadtest.soak import REPO, markdown, run_soak
from ops.server import stop
from tests.integration.conftest import start_server

pytestmark = pytest.mark.soak
SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))


def test_ten_minute_soak(tmp_path_factory: pytest.TempPathFactory, cifake_images) -> None:
    run_dir = tmp_path_factory.mktemp("torchserve_soak")
    client = start_server(run_dir)
    try:
        out = REPO / "loadtest" / "results" / "soak"
        report = run_soak(client, run_dir / "key_file.json", [d for _, d in cifake_images], out, seconds=SECONDS,
                          users=4, sample_every=SECONDS / 60)
    finally:
        stop(run_dir)
    print(markdown(report))
    assert report.checks(max_memory_growth_pct=10.0) == []
    assert report.locust_requests > 0 and report.locust_ok == report.locust_requests
