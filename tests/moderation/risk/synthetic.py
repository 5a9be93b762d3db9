"""Small labelled files in the shared datasets' layout, written by the tests themselves.

The texts are templated so each class has words of its own: enough for tiny models to
learn something and for the pipeline (splits, training, evaluation) to run end to end
without ``../shared``.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

NAMES = ["Ann", "Bob", "Cid", "Dee", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jon"]
TOPICS = ["garden", "train", "concert", "library", "market", "bakery", "harbour", "museum"]
THINGS = ["printer", "bus", "laptop", "weather", "traffic", "oven", "phone", "queue"]
GROUPS = ["those people", "the foreigners", "that tribe", "the outsiders"]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_datasets(root: Path, per_class: int = 30, seed: int = 3) -> tuple[Path, Path]:
    """Write every source under ``root``; returns (moderation dir, taxonomy_dev dir)."""
    rng = random.Random(seed)

    def pick(options: list[str]) -> str:
        return rng.choice(options)

    moderation, clean = root / "moderation", root / "taxonomy_dev"
    davidson = []
    for _ in range(per_class):
        davidson.append([f"@{pick(NAMES)} you are a damn fool, shut up fool", "offensive"])
        davidson.append([f"this damn {pick(THINGS)} is shit again", "offensive"])
        davidson.append([f"{pick(GROUPS)} are vermin, send {pick(GROUPS)} away", "hate"])
        davidson.append([f"lovely day at the {pick(TOPICS)} with {pick(NAMES)}", "neither"])
    _write(moderation / "offensive_tweets.train.csv", ["text", "label"], davidson)
    olid = []
    for _ in range(per_class):
        olid.append([f"@USER you idiot {pick(NAMES)}, you loser", "OFF", "TIN", "IND"])
        olid.append([f"@USER {pick(GROUPS)} are scum and liars", "OFF", "TIN", "GRP"])
        olid.append([f"@USER the {pick(TOPICS)} board are crooks", "OFF", "TIN", "OTH"])
        olid.append([f"@USER damn this {pick(THINGS)}, so shit", "OFF", "UNT", "NULL"])
        olid.append([f"@USER nice talk about the {pick(TOPICS)} today", "NOT", "NULL", "NULL"])
    _write(
        moderation / "olid_offenseval2019.train.csv",
        ["text", "offensive", "offense_type", "target"], olid,
    )
    sms, youtube = [], []
    for _ in range(per_class):
        sms.append([f"WINNER! claim your cash prize now, call 0906{rng.randint(0, 9999)}", "spam"])
        sms.append([f"see you at the {pick(TOPICS)} later {pick(NAMES)}", "ham"])
        youtube.append([f"subscribe to my channel check out my {pick(THINGS)} videos", "spam"])
        youtube.append([f"great song, reminds me of the {pick(TOPICS)}", "ham"])
    _write(moderation / "sms_spam.train.csv", ["text", "label"], sms)
    _write(moderation / "youtube_spam.train.csv", ["text", "label"], youtube)
    headlines = []
    for _ in range(per_class):
        headlines.append([f"You Won't Believe What This {pick(THINGS)} Did Next", "clickbait"])
        headlines.append([f"Council approves new {pick(TOPICS)} budget", "not_clickbait"])
    _write(moderation / "clickbait_headlines.train.csv", ["text", "label"], headlines)
    newsgroups, wikipedia, bbc = [], [], []
    for _ in range(per_class):
        for group in ("rec.autos", "sci.space", "talk.politics.misc"):
            newsgroups.append([
                f"Re: {pick(THINGS)} question\nDoes anyone know how the {pick(THINGS)} works "
                f"near the {pick(TOPICS)}?", group,
            ])
        wikipedia.append([
            f"{pick(NAMES)} {pick(NAMES)}son (born 1950) is a writer from the {pick(TOPICS)}.",
            "Artist",
        ])
        wikipedia.append([f"The {pick(TOPICS)} of {pick(NAMES)} is a building in a town.",
                          "Building"])
        bbc.append([f"Markets rise\n\nShares rose at the {pick(TOPICS)} on Monday.", "business"])
    _write(clean / "newsgroups20_train_sample.csv", ["text", "label"], newsgroups)
    _write(clean / "dbpedia14_sample.csv", ["text", "label"], wikipedia)
    _write(clean / "bbc_news_dev.csv", ["text", "label"], bbc)
    return moderation, clean
