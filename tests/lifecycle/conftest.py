"""Lifecycle fixtures: the service tests' runtime with a clock that only moves when told."""

from tests.service.conftest import clock, frozen_runtime

__all__ = ["clock", "frozen_runtime"]
