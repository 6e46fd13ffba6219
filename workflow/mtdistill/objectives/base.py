"""The objectives' registry and its decorator, below the objective modules that use them."""

from __future__ import annotations

from ..core.registry import Registry

OBJECTIVES = Registry("objectives")


def register(cls):
    """Class decorator: register an objective under its `name`."""
    return OBJECTIVES.register(cls.name)(cls)
