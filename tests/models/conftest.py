"""Fixtures for the models tests."""

from __future__ import annotations

import numpy as np
import pytest

from support import make_photo


@pytest.fixture
def photo() -> np.ndarray:
    """One 240x320 photo-like RGB image."""
    return make_photo(0)
