"""The whole input battery in one dynamic batch through the handler (no server): each request gets
its own answer, and the valid images batched with the bad ones are classified as if alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.answer import UNCERTAIN
from handlers.ai_detector_handler import AIDetectorHandler
from tests.conftest import FakeContext
from tests.input_battery import OK, configured_limits, as_torchserve_request, build_battery


@pytest.fixture(scope="module")
def handler(artifacts_dir: Path) -> AIDetectorHandler:
    handler = AIDetectorHandler()
    handler.initialize(FakeContext(artifacts_dir, "ai_detector.pt", {"intra_op_threads": 1}))
    return handler


def test_battery_has_at_least_thirty_cases(cifake_images) -> None:
    cases = build_battery(cifake_images[0][1], *configured_limits())
    assert len(cases) >= 30 and len({c.name for c in cases}) == len(cases)
    assert {c.expect for c in cases} == {OK, 400, 413, 415}


def test_every_case_answered_alone_inside_one_batch(handler: AIDetectorHandler, cifake_images) -> None:
    cases = [c for c in build_battery(cifake_images[0][1], *configured_limits()) if c.handler_checked and not c.multipart]
    valid = [cifake_images[i % len(cifake_images)][1] for i in range(len(cases))]
    alone = [handler.handle([{"body": data}], FakeContext(Path("."), "x"))[0] for data in valid]
    batch = [request for case, data in zip(cases, valid) for request in (as_torchserve_request(case), {"body": data})]
    context = FakeContext(Path("."), "x")
    responses = handler.handle(batch, context)
    assert len(responses) == len(batch)
    for index, case in enumerate(cases):
        response, status = responses[2 * index], context.statuses.get(2 * index, (OK, ""))[0]
        assert status == case.expect, f"{case.name}: {status} {response}"
        if case.expect == OK:
            assert response["label"] in ("REAL", "FAKE", UNCERTAIN), case.name
        else:
            assert set(response) == {"code", "type", "message"} and response["code"] == status, case.name
            assert case.error_type is None or response["type"] == case.error_type, f"{case.name}: {response}"
            assert len(response["message"]) > 10, case.name
    for index, expected in enumerate(alone):
        assert 2 * index + 1 not in context.statuses
        assert responses[2 * index + 1]["probabilities"]["FAKE"] == pytest.approx(expected["probabilities"]["FAKE"], abs=1e-5)
