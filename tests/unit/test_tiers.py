"""The test tiers hold: unit modules reach for no data, archives or server, and every test is in a tier."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.unit.conftest import INTEGRATION_ONLY

TESTS = REPO / "tests"
# what only the integration tier may touch: the CIFAKE archives, the built archives, a real TorchServe
INTEGRATION_NAMES = re.compile(r"\b(require_cifake|TEST_ZIP|ARTIFACTS|MODEL_STORE|start_server|tests\.integration)\b")
INTEGRATION_FIXTURES = re.compile(r"def \w+\([^)]*\b(" + "|".join(INTEGRATION_ONLY) + r")\b")


def test_unit_modules_use_nothing_of_the_integration_tier() -> None:
    offenders = {str(path.relative_to(REPO)): sorted(set(INTEGRATION_NAMES.findall(path.read_text())
                                                         + INTEGRATION_FIXTURES.findall(path.read_text())))
                 for path in (TESTS / "unit").rglob("*.py") if path.name not in ("conftest.py", Path(__file__).name)}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_every_test_module_sits_in_a_tier() -> None:
    loose = [str(p.relative_to(REPO)) for p in TESTS.rglob("test_*.py")
             if p.relative_to(TESTS).parts[0] not in ("unit", "integration")]
    assert loose == []


def test_the_unit_guard_refuses_integration_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((TESTS / "unit" / "conftest.py").read_text())
    pytester.makepyfile("def test_wants_data(cifake_dir):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)   # refused while setting up, before the test runs
    assert "move it to tests/integration/" in result.stdout.str()
