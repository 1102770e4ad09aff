"""Semantic backbones by name. Adding one: a module here that registers its class, plus its import below."""

from __future__ import annotations

from at2seld_edge.registry import Registry

BACKBONES: Registry = Registry("backbone")

from at2seld_edge.model.backbones import mobilenet, panns_cnn  # noqa: E402,F401  (registration)
