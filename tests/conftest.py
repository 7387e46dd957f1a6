"""Fixtures shared by every test: generated demo models, free ports."""

from __future__ import annotations

import pytest
from support.models import DemoModels, make_demo_models


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory) -> DemoModels:
    """The tiny and small demo models, generated once per test session."""
    return make_demo_models(tmp_path_factory.mktemp("models"))
