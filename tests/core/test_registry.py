"""Every registered factory takes its registry's one signature (core/registry.py), so the
wiring can call any of them the same way."""

from __future__ import annotations

import inspect
from pathlib import Path

import catalogue
import pytest

from core.errors import InvalidConfig
from core.registry import (
    audio_embedders,
    entity_extractors,
    rankers,
    resolve,
    risk_models,
    text_embedders,
    visual_embedders,
)

# How the wiring calls each registry's factories.
CALLS: dict[str, tuple[catalogue.Registry, tuple[object, ...], dict[str, object]]] = {
    "text_embedders": (text_embedders, (object(), Path("cache")),
                       {"threads": None, "device": "cpu"}),
    "visual_embedders": (visual_embedders, (object(), Path("cache")),
                         {"threads": 2, "device": "cuda"}),
    "audio_embedders": (audio_embedders, (object(), Path("cache")),
                        {"threads": None, "device": "cpu"}),
    "entity_extractors": (entity_extractors, ("rules",), {}),
    "risk_models": (risk_models, (None, None), {}),
    "rankers": (rankers, (object(),), {}),
}


def _entry_point_names(registry: catalogue.Registry) -> list[str]:
    from importlib.metadata import entry_points

    return [ep.name for ep in entry_points(group="_".join(registry.namespace))]


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_factory_takes_its_registrys_signature(name: str) -> None:
    registry, args, kwargs = CALLS[name]
    names = _entry_point_names(registry)
    assert names, f"no built-in {name} declared in pyproject.toml's entry points"
    for entry in names:
        factory = resolve(registry, entry)  # loads it through its entry point
        try:
            inspect.signature(factory).bind(*args, **kwargs)
        except TypeError as exc:
            pytest.fail(f"{entry} does not take the {name} signature: {exc}")


def test_every_registered_name_is_declared_as_an_entry_point() -> None:
    """A factory registered only on import would be unknown to a process that has not
    imported its module yet; the entry points make every name resolvable anywhere."""
    import analyzers.entities
    import analyzers.media
    import analyzers.text_embedding  # noqa: F401
    import moderation.risk.model  # noqa: F401
    import recommender.ranking  # noqa: F401

    for name, (registry, _, _) in CALLS.items():
        registered = {n for n in registry.get_all() if not n.startswith("reelsift.test.")}
        assert registered <= set(_entry_point_names(registry)), name


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(InvalidConfig, match=r"reelsift\.ranker\.heuristic\.v1"):
        resolve(rankers, "reelsift.ranker.nope.v1")
