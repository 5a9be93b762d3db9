"""Drive simulated users through a recommender: feed, respond, post the events back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from recommender.service import Recommender
from recommender.simulation.user import SimulatedUser
from recommender.simulation.world import SyntheticWorld


@dataclass
class SessionLog:
    events: int = 0
    items: int = 0
    watch_ms: list[int] = field(default_factory=list)


def run_user(
    rec: Recommender, user: SimulatedUser, world: SyntheticWorld, advance: Callable[[float], None],
    *, min_events: int, k: int = 10, seconds_per_item: float = 20.0,
) -> SessionLog:
    """Ask for feeds and answer every item until the user has posted ``min_events``."""
    log = SessionLog()
    while log.events < min_events:
        response = rec.feed.feed(user.user_id, k, {"device": user.device})
        if not response.items:
            break
        batch = []
        for entry in response.items:
            now = datetime.fromtimestamp(rec.state.now(), tz=UTC)
            answer = user.respond(world.by_id[entry.item_id], now,
                                  {"channels": entry.channels})
            batch.extend(answer.events)
            log.watch_ms.append(answer.watch_ms)
            log.items += 1
            advance(seconds_per_item)
        rec.events.ingest(batch)
        log.events += len(batch)
    return log


def popularity_feed(rec: Recommender, user_id: str, k: int) -> list[str]:
    """The baseline: the whole catalog by positive feedback (items without any last, by
    id), minus what the user saw."""
    profile = rec.state.profiles.get(user_id)
    blocked = profile.excluded() if profile is not None else set()
    counts = rec.state.stats.all_positive_counts()
    ranked = sorted((i for i in rec.catalog.item_ids() if i not in blocked),
                    key=lambda i: (-counts.get(i, 0), i))
    return ranked[:k]


def run_population(
    rec: Recommender, world: SyntheticWorld, advance: Callable[[float], None], *,
    users: int, min_events: int, seed: int = 0, prefix: str = "sim",
) -> list[SessionLog]:
    """Simulated users ``{prefix}0..`` each fed until they posted ``min_events`` (an
    experiment's population: the recommender buckets them by id)."""
    return [
        run_user(rec, SimulatedUser(f"{prefix}{n}", world, seed=seed + n), world, advance,
                 min_events=min_events)
        for n in range(users)
    ]
