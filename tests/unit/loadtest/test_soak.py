"""The soak report's judgement: memory growth that catches a leak but not the allocator's sawtooth,
and failures counted as retriable only when TorchServe says the worker died."""

from __future__ import annotations

from pathlib import Path

from loadtest.locust_runner import read_stats
from loadtest.soak import SoakReport, memory_growth_pct


def test_memory_growth_ignores_a_sawtooth_and_catches_a_leak() -> None:
    times = [10.0 * i for i in range(60)]
    sawtooth = [(t, 760.0 + (30.0 if i % 5 == 0 else 0.0)) for i, t in enumerate(times)]
    leak = [(t, 700.0 + t * 0.2) for t in times]  # +120 MiB over 10 minutes
    assert abs(memory_growth_pct(sawtooth, 600)) < 2
    assert memory_growth_pct(leak, 600) > 10


def test_locust_failures_are_split_into_retriable_and_unexplained(tmp_path: Path) -> None:
    prefix = tmp_path / "locust"
    header = "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time," \
             "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
    Path(f"{prefix}_stats.csv").write_text(header + "\nPOST,/predictions/ai_detector,100,5,90,95,50,900,120,10.0,0.5,"
                                           "90,95,100,110,120,130,140,150,160,170,900\n"
                                           ",Aggregated,100,5,90,95,50,900,120,10.0,0.5,90,95,100,110,120,130,140,150,160,170,900\n")
    Path(f"{prefix}_failures.csv").write_text(
        "Method,Name,Error,Occurrences\n"
        "POST,/predictions/ai_detector,\"CatchResponseError('507: {\\n  \"\"message\"\": \"\"Worker died.\"\"\\n}')\",3\n"
        "POST,/predictions/ai_detector,\"CatchResponseError('500: {\"\"message\"\": \"\"boom\"\"}')\",2\n")
    report = SoakReport(model="ai_detector", seconds=10, users=1)
    report.add_locust(read_stats(prefix))
    assert (report.locust_requests, report.locust_ok, report.locust_unexplained_failures) == (100, 95, 2)
    assert report.latency_ms["99%"] == 150.0
    assert report.locust_failures == {'507: {\\n  "message": "Worker died."\\n}': 3, '500: {"message": "boom"}': 2}
    assert report.checks(None) == ["2 Locust failures are not retriable answers"]
