"""Guizhou cascade: national, provincial and city hubs (see ``_guizhou``)."""

from ._guizhou import build_cascade as build

__all__ = ["build"]
