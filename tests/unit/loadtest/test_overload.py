"""The overload tool's saturation search and per-status figures, on scripted throughputs and CSV rows."""

from __future__ import annotations

from loadtest.locust_runner import LocustRow
from loadtest.overload import find_saturation, status_figures, summary
from detector.hardware import cpu_info


def test_saturation_is_the_best_throughput_before_two_flat_doublings() -> None:
    curve = {1: 40.0, 2: 42.0, 4: 55.0, 8: 70.0, 16: 72.0, 32: 71.0, 64: 90.0}
    measured = []

    def measure(users: int) -> float:
        measured.append(users)
        return curve[users]

    # 2 users add under 10 % but 4 do (one flat step is noise); 16 and 32 add nothing: saturation at 8
    assert find_saturation(measure) == (8, 70.0)
    assert measured == [1, 2, 4, 8, 16, 32]


def test_saturation_search_stops_at_the_user_bound() -> None:
    assert find_saturation(lambda users: 10.0 * users, max_users=16) == (16, 160.0)


def test_status_figures_split_answers_by_status() -> None:
    rows = {"200": LocustRow(300, 0, 30.0, {"50%": 90.0, "95%": 150.0}),
            "503": LocustRow(100, 100, 10.0, {"50%": 4.0, "95%": 9.0}),
            "Aggregated": LocustRow(400, 100, 40.0, {"50%": 80.0, "95%": 140.0})}
    figures = status_figures(rows, seconds=10)
    assert figures == {"200": {"count": 300, "share": 0.75, "per_second": 30.0, "p50_ms": 90.0, "p95_ms": 150.0},
                       "503": {"count": 100, "share": 0.25, "per_second": 10.0, "p50_ms": 4.0, "p95_ms": 9.0}}
    report = {"cpu": cpu_info(), "model": "ai_detector", "host": "http://127.0.0.1:8080", "clients_back_off": True,
              "saturation": {"users": 8, "rps": 40.0, "step_seconds": 8},
              "overload": {"users": 32, "factor": 4, "seconds": 10, "goodput_rps": 30.0,
                           "goodput_vs_saturation": 0.75, "statuses": figures}}
    text = summary(report)
    assert "| 503 | 100 | 25.0% | 10.0 | 4 | 9 |" in text and "= 75% of saturation" in text
    assert "back off after a 503" in text
    assert "come straight back" in summary({**report, "clients_back_off": False})
