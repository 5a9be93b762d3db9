"""A simulated viewer with hidden, drifting interests over the world's categories."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from core.contracts import Event
from recommender.simulation.world import SyntheticItem, SyntheticWorld

_ids = itertools.count()


@dataclass
class UserResponse:
    events: list[Event] = field(default_factory=list)
    watch_ms: int = 0


class SimulatedUser:
    """Interests are a distribution over categories; a few categories dominate.

    Watch ratio grows with interest in the item's category (clickbait items are left
    within seconds whatever the interest); an uninterested viewer skips; likes come
    from strong interest; after each item the interests drift a little towards a
    random category (``drift``).
    """

    def __init__(
        self, user_id: str, world: SyntheticWorld, *, seed: int = 0,
        concentration: float = 0.3, drift: float = 0.002, device: str = "mobile",
    ) -> None:
        self.user_id = user_id
        self.world = world
        self.rng = np.random.default_rng(seed)
        self.interests = self.rng.dirichlet(np.full(world.n_categories, concentration))
        self.drift = drift
        self.device = device

    def affinity(self, item: SyntheticItem) -> float:
        """Interest in the item's category relative to the favourite, in [0, 1]."""
        return float(self.interests[item.category] / self.interests.max())

    def expected_watch_ratio(self, item: SyntheticItem) -> float:
        if item.clickbait:
            return 0.05
        return 0.05 + 0.9 * self.affinity(item) ** 1.5

    def expected_watch_ms(self, item: SyntheticItem) -> float:
        return self.expected_watch_ratio(item) * item.duration_ms

    def respond(
        self, item: SyntheticItem, ts: datetime, context: dict[str, object] | None = None,
    ) -> UserResponse:
        ctx: dict[str, object] = {"device": self.device, **(context or {})}
        out = UserResponse()

        def event(kind: str, **extra: int) -> Event:
            return Event(event_id=f"sim-{self.user_id}-{next(_ids)}", user_id=self.user_id,
                         item_id=item.id, type=kind, ts=ts, context=ctx, **extra)  # type: ignore[arg-type]

        out.events.append(event("impression"))
        mean = self.expected_watch_ratio(item)
        ratio = float(self.rng.beta(max(2.0 * mean / (1.0 - mean), 0.05), 2.0))
        if ratio < 0.1 and self.rng.random() < 0.5:
            out.events.append(event("skip", watch_ms=int(ratio * item.duration_ms),
                                    item_duration_ms=item.duration_ms))
        else:
            watch = int(ratio * item.duration_ms)
            kind = "complete" if ratio >= 0.95 else "view"
            out.events.append(event(kind, watch_ms=watch, item_duration_ms=item.duration_ms))
            if ratio > 0.5 and self.rng.random() < 0.5 * self.affinity(item) ** 2:
                out.events.append(event("like"))
        out.watch_ms = int(ratio * item.duration_ms)
        self._drift()
        return out

    def _drift(self) -> None:
        if self.drift <= 0:
            return
        target = np.zeros_like(self.interests)
        target[int(self.rng.integers(len(target)))] = 1.0
        self.interests = (1 - self.drift) * self.interests + self.drift * target
