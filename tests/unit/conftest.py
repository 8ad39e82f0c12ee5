"""The unit tier: no CIFAKE, no built artifacts, no server. Asking for one of those fixtures here fails
with where the test belongs, so the tier stays what `make test-unit` promises."""

from __future__ import annotations

import pytest

INTEGRATION_ONLY = ("cifake_dir", "cifake_images", "artifacts_dir", "server")


def _refuse(request: pytest.FixtureRequest) -> None:
    pytest.fail(f"{request.node.nodeid} asks for `{request.fixturename}`: unit tests use no data, archives or "
                "server; move it to tests/integration/", pytrace=False)


@pytest.fixture
def cifake_dir(request: pytest.FixtureRequest) -> None:
    _refuse(request)


@pytest.fixture
def cifake_images(request: pytest.FixtureRequest) -> None:
    _refuse(request)


@pytest.fixture
def artifacts_dir(request: pytest.FixtureRequest) -> None:
    _refuse(request)
