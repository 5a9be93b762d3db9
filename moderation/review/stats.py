"""Queue health: depth by category and tier, age of open work, decision throughput."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from moderation.review.db import as_utc, as_utc_or_none
from moderation.review.models import DepthRow, ReviewStats
from moderation.review.tables import OPEN, ReviewDecisionRow, ReviewTaskRow


def stats(session: Session, now: datetime, moderator: str | None = None) -> ReviewStats:
    open_rows = session.execute(
        select(
            ReviewTaskRow.category, ReviewTaskRow.tier, ReviewTaskRow.claimed_by,
            ReviewTaskRow.lease_expires_at, ReviewTaskRow.created_at,
        ).where(ReviewTaskRow.status == OPEN)
    ).all()
    unclaimed: Counter[tuple[str | None, int]] = Counter()
    claimed: Counter[tuple[str | None, int]] = Counter()
    ages = []
    for category, tier, holder, lease, created_at in open_rows:
        lease_at = as_utc_or_none(lease)
        live = holder is not None and lease_at is not None and lease_at > now
        (claimed if live else unclaimed)[(category, tier)] += 1
        ages.append((now - as_utc(created_at)).total_seconds())
    keys = sorted(set(unclaimed) | set(claimed), key=lambda k: (k[1], k[0] or ""))
    depth = [
        DepthRow(category=c, tier=t, unclaimed=unclaimed[(c, t)], claimed=claimed[(c, t)])
        for c, t in keys
    ]
    p50 = p95 = None
    if ages:
        p50, p95 = (float(v) for v in np.percentile(np.asarray(ages), [50, 95]))

    def decided_since(since: datetime, by: str | None = None) -> int:
        query = select(func.count(ReviewDecisionRow.id)).where(
            ReviewDecisionRow.created_at > since, ReviewDecisionRow.created_at <= now
        )
        if by is not None:
            query = query.where(ReviewDecisionRow.moderator == by)
        return int(session.scalar(query) or 0)

    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)

    return ReviewStats(
        depth=depth, open_total=len(open_rows), age_p50_s=p50, age_p95_s=p95,
        oldest_open_age_s=max(ages) if ages else None,
        my_decisions_today=(
            decided_since(midnight - timedelta(microseconds=1), moderator) if moderator else None
        ),
        decisions_last_hour=decided_since(now - timedelta(hours=1)),
        decisions_per_hour_24h=decided_since(now - timedelta(hours=24)) / 24.0, at=now,
    )
