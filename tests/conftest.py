"""Shared pytest setup: the switch that makes golden tests rewrite their expected files.

``pytest --update-golden`` (or ``SPICEDSL_UPDATE_GOLDEN=1 pytest``) rewrites each
golden file from what the code produces now, as stanc3's ``dune promote`` does; review
the diff like code before committing it.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite the expected files of golden tests instead of comparing with them",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when golden tests should rewrite their expected files."""
    flag = request.config.getoption("--update-golden")
    return bool(flag or os.environ.get("SPICEDSL_UPDATE_GOLDEN"))
