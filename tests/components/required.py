"""Skip when a real component is missing, except where the test command demands them all."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

# scripts/test.sh (and so CI) sets this: there a missing component is a failure, never a skip.
REQUIRE_ALL = "CERTMAN_TEST_REQUIRE_COMPONENTS"


def missing_component(reason: str, *, module_level: bool = False) -> NoReturn:
    if os.environ.get(REQUIRE_ALL):
        pytest.fail(f"{reason}; {REQUIRE_ALL} is set, so the test run fails.", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)
