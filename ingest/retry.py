"""Analyzing ``failed`` items again: text items at once, media items by a new job."""

from __future__ import annotations

import contextlib

from core.errors import ContentNotAnalyzable
from ingest.media import MediaIngestService
from ingest.models import ItemOut
from ingest.recovery import failed_item_ids
from ingest.text import TextIngestService


def retry_item(text: TextIngestService, media: MediaIngestService, item_id: str) -> ItemOut:
    """Analyze a ``failed`` (or unanalyzed ``received``) item again; items in any other
    state are returned as they are."""
    if media.has_media(item_id):
        media.requeue(item_id)
    else:
        with contextlib.suppress(ContentNotAnalyzable):  # the item's state says why
            text.analyze_items([item_id])
    return text.get_item(item_id)


def retry_failed(text: TextIngestService, media: MediaIngestService) -> list[ItemOut]:
    """Every ``failed`` item analyzed again."""
    return [retry_item(text, media, item_id) for item_id in failed_item_ids(text.store)]
