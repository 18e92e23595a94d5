"""Plug-ins over the base-model interface; `base` is the model alone."""

from __future__ import annotations

from ..models import model_class
from ..names import PLUGIN_NAMES
from .alpharec import AlphaRec
from .base import Base, Plugin, Scorer
from .dmrec import DMRec, DMRecC, DMRecG, DMRecM
from .kar import KAR
from .proex import ProEx
from .rlmrec import RLMRecCon, RLMRecGen

PLUGINS: dict[str, type[Plugin]] = {
    p.name: p for p in (Base, ProEx, RLMRecCon, RLMRecGen, KAR, AlphaRec, DMRecG, DMRecC, DMRecM)
}
assert tuple(PLUGINS) == PLUGIN_NAMES, "proex.names.PLUGIN_NAMES lists the registered plug-ins, in this order"


def plugin_class(name: str) -> type[Plugin]:
    try:
        return PLUGINS[name]
    except KeyError:
        raise ValueError(f"unknown plug-in {name!r}; known plug-ins: {', '.join(PLUGINS)}") from None


def check_pair(model: str, plugin: str) -> None:
    """Raise ValueError (the plug-in's own message) when `plugin` cannot run on `model`, before data is read."""
    reason = plugin_class(plugin).refusal(model_class(model))
    if reason:
        raise ValueError(reason)


__all__ = [
    "PLUGINS",
    "plugin_class",
    "check_pair",
    "Plugin",
    "Base",
    "ProEx",
    "RLMRecCon",
    "RLMRecGen",
    "KAR",
    "AlphaRec",
    "DMRec",
    "DMRecG",
    "DMRecC",
    "DMRecM",
    "Scorer",
]
