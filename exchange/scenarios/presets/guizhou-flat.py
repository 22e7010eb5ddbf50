"""Guizhou, flat: the cascade's workload on one provincial hub (see ``_guizhou``)."""

from ._guizhou import build_flat as build

__all__ = ["build"]
