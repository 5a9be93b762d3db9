"""Training of the text risk heads: pooled domains, one n-gram model per head, calibrated.

With one fixed seed:

1. every source (``datasets.TRAINING_SOURCES``) is split stratified into *fit* (70 %),
   *calib* (10 %) and *test* (20 %); BBC articles are measure-only and never read here;
2. one pair of TF-IDF vectorizers (``char_wb`` 2-5 and word 1-2 n-grams) is fitted on the
   *fit* texts of every source, so all heads share one transform at scoring time;
3. per head, a logistic regression learns that head's positives against its own
   negatives plus the clean rows of every other domain (``datasets`` has the rules),
   with extra weight on the clean sources a head misjudged most (``clean_weight``);
4. per head, a calibrator (logistic regression over the n-gram logit, plus
   alt-profanity-check's logit for the abuse heads) is fitted on the *calib* rows of
   every domain together, so a probability means the same on tweets and on articles;
5. where an encoder is given (``TokenStateCache``), the heads of ``token_heads`` also get
   a head over the encoder's word-piece states (``token_heads.py``), trained on the *fit*
   rows of the sources named for it, and a second calibrator that stacks its logit with
   the n-gram probability, fitted on the *calib* rows of every domain; the n-gram
   calibrator stays for callers without the states;
6. the *test* rows of every source are scored and their figures recorded in the
   manifest, beside the file hashes, the config and the model file's hash.

Everything is deterministic (fixed seeds, liblinear, sorted outputs, no timings; torch
with a fixed seed and thread count for the token-state heads), so the same data, code,
seed and kind of machine give the same bytes: ``reelsift train risk --check`` retrains
into a temporary folder and compares.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from core.errors import InvalidInput
from moderation.risk import artifacts
from moderation.risk.datasets import (
    ABUSE_HEADS,
    HEAD_NAMES,
    NOT_USED,
    TITLE_HEADS,
    TRAINING_SOURCES,
    SourceRows,
    load_sources,
    split_rows,
    stratified_sample,
)
from moderation.risk.features import (
    VectorizerConfig,
    fit_vectorizers,
    logit,
    make_vectorizers,
    normalise_all,
    profanity_probability,
    transform,
)
from moderation.risk.heads import CAPPED_BY, head_inputs, head_probability, stack_inputs
from moderation.risk.metrics import binary_report, expected_calibration_error
from moderation.risk.token_heads import TokenHeadConfig, TokenStateCache, train_token_head

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 13
    test_fraction: float = 0.2
    calib_fraction: float = 0.1
    vectorizers: VectorizerConfig = field(default_factory=VectorizerConfig)
    # Inverse regularisation of each head's n-gram model.
    head_c: dict[str, float] = field(
        default_factory=lambda: {
            "profanity": 4.0, "harassment": 4.0, "hate": 2.0, "spam": 16.0, "clickbait": 16.0,
        }
    )
    # Each source's share of a head's class weight goes with n ** -source_balance times
    # its row count (0: rows weigh the same; 1: every source weighs the same), so 20k
    # Davidson tweets do not drown 13k OLID tweets, nor 14k abstracts 700 YouTube comments.
    source_balance: float = 0.5
    # Extra weight on one source's clean rows among one head's negatives, on top of the
    # balance above: the clean text a head is most likely to meet in the product and that
    # the balance shrinks most. Spam meets long prose (forum posts, abstracts: news-like
    # event notices with "free" and "join" scored 0.45-0.52 without it); clickbait meets
    # forum subject lines phrased as questions; harassment meets blunt forum replies
    # ("if you want to stick your car up the ass of a semi ..."), which the tweets'
    # second-person insults resemble. Chosen on *calib* and a split of the *fit* rows,
    # never on *test* (see DATA_SOURCES.md).
    clean_weight: dict[str, dict[str, float]] = field(
        default_factory=lambda: {
            "spam": {"newsgroups": 3.0, "wikipedia": 3.0},
            "clickbait": {"newsgroups": 6.0},
            "harassment": {"newsgroups": 3.0},
        }
    )
    # A head's probability capped by another's at scoring time (``heads.CAPPED_BY``:
    # harassment by profanity); stored in the bundle so the model file says what it does.
    capped_by: dict[str, str] = field(default_factory=lambda: dict(CAPPED_BY))
    # Heads that also read the encoder's word-piece states, and the sources whose *fit*
    # rows train that part (each source's share of a class balanced as above). Hate
    # learns from both sources of group-targeted abuse: from Davidson alone it does not
    # rank OLID's group-targeted tweets, which the every-domain calibrator must also
    # serve; profanity and spam from every domain (DATA_SOURCES.md, sixth pass).
    token_heads: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {
            "hate": ("davidson", "olid"),
            "profanity": tuple(s.name for s in TRAINING_SOURCES),
            "spam": tuple(s.name for s in TRAINING_SOURCES),
        }
    )
    token_head: TokenHeadConfig = field(default_factory=TokenHeadConfig)
    # Stratified sample of each file: for quick runs and tests, never for shipped models.
    max_rows_per_source: int | None = None


@dataclass
class TrainingResult:
    output_dir: Path
    manifest: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.manifest["metrics"])


@dataclass
class PreparedSource:
    """A source with its splits and its features (documents and, for title heads, titles)."""

    rows: SourceRows
    splits: dict[str, np.ndarray]
    documents: sp.csr_matrix
    titles: sp.csr_matrix
    profanity_logit: np.ndarray

    def features(self, head: str) -> sp.csr_matrix:
        return self.titles if head in TITLE_HEADS else self.documents

    def head_rows(self, head: str, split: str) -> np.ndarray:
        rows = self.splits[split]
        return rows[self.rows.targets[head][rows] != NOT_USED]


def prepare_sources(
    moderation_dir: Path, clean_dir: Path, config: TrainConfig,
    say: Callable[[str], None] = log.info,
) -> tuple[dict[str, PreparedSource], dict[str, Any]]:
    """Load, split and vectorise every training source; returns them and the vectorizers."""
    sources = load_sources(moderation_dir, clean_dir, [s.name for s in TRAINING_SOURCES])
    if config.max_rows_per_source is not None:
        sources = {
            name: stratified_sample(rows, config.max_rows_per_source, config.seed)
            for name, rows in sources.items()
        }
    splits = {
        name: split_rows(rows, config.seed, config.test_fraction, config.calib_fraction)
        for name, rows in sources.items()
    }
    corpus: list[str] = []
    for name, rows in sources.items():
        fit = splits[name]["fit"]
        corpus.extend(rows.texts[i] for i in fit)
        corpus.extend(rows.titles[i] for i in fit if rows.titles[i])
    say(f"fitting the n-gram vocabulary on {len(corpus)} texts")
    vectorizers = make_vectorizers(config.vectorizers)
    fit_vectorizers(vectorizers, normalise_all(corpus))
    prepared: dict[str, PreparedSource] = {}
    for name, rows in sources.items():
        say(f"vectorising {name} ({len(rows)} rows)")
        documents = transform(vectorizers, normalise_all(rows.texts))
        titles = (
            transform(vectorizers, normalise_all([t or d for t, d in zip(
                rows.titles, rows.texts, strict=True
            )]))
            if any(rows.titles) else documents
        )
        prepared[name] = PreparedSource(
            rows=rows, splits=splits[name], documents=documents, titles=titles,
            profanity_logit=logit(profanity_probability(rows.texts)),
        )
    return prepared, vectorizers


def _stack_rows(
    prepared: dict[str, PreparedSource], head: str, split: str, source_balance: float = 0.0,
    clean_weight: dict[str, float] | None = None, names: tuple[str, ...] | None = None,
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray]:
    """Features, targets, profanity logits and sample weights of one head's rows (of the
    sources in ``names``, default all)."""
    xs, ys, profanity, groups, extra = [], [], [], [], []
    for index, (name, source) in enumerate(prepared.items()):
        if names is not None and name not in names:
            continue
        rows = source.head_rows(head, split)
        if rows.size:
            xs.append(source.features(head)[rows])
            y = source.rows.targets[head][rows]
            ys.append(y)
            profanity.append(source.profanity_logit[rows])
            groups.append(index * 2 + y.astype(np.int64))
            extra.append(np.where(y == 0, (clean_weight or {}).get(name, 1.0), 1.0))
    if not xs:
        raise InvalidInput(f"head {head!r}: no {split} rows")
    y_all = np.concatenate(ys).astype(np.int8)
    group = np.concatenate(groups)
    counts = np.bincount(group)
    weights = np.ones(len(group), dtype=np.float64)
    for label in (0, 1):
        in_class = (group % 2) == label
        if not in_class.any():
            continue
        per_row = counts[group[in_class]].astype(np.float64) ** -source_balance
        # Rescaled so the class keeps its total weight: only the split between sources moves.
        weights[in_class] = per_row * in_class.sum() / per_row.sum()
    # Hard negatives count extra (the negative class grows; the calibrator re-centres).
    weights *= np.concatenate(extra)
    return sp.vstack(xs).tocsr(), y_all, np.concatenate(profanity), weights


def train_head(
    head: str, prepared: dict[str, PreparedSource], config: TrainConfig
) -> dict[str, Any]:
    """The n-gram model on *fit* rows, its calibrator on *calib* rows of every domain."""
    x_fit, y_fit, _, weights = _stack_rows(
        prepared, head, "fit", config.source_balance, config.clean_weight.get(head)
    )
    if len(np.unique(y_fit)) < 2:
        raise InvalidInput(f"head {head!r}: the training rows hold a single class")
    ngram = LogisticRegression(
        C=config.head_c.get(head, 4.0), solver="liblinear", max_iter=2000,
        random_state=config.seed,
    ).fit(x_fit, y_fit, sample_weight=weights)
    x_calib, y_calib, profanity_calib, _ = _stack_rows(prepared, head, "calib")
    uses_profanity = head in ABUSE_HEADS
    calibrator = LogisticRegression(C=1.0, max_iter=1000, random_state=config.seed).fit(
        head_inputs(ngram.decision_function(x_calib), profanity_calib if uses_profanity else None),
        y_calib,
    )
    return {"ngram": ngram, "calibrator": calibrator, "uses_profanity_check": uses_profanity}


TokenLogits = dict[str, dict[str, np.ndarray]]  # head -> source -> logit per row


def train_token_parts(
    head: str, parts: dict[str, Any], prepared: dict[str, PreparedSource],
    states: dict[str, list[np.ndarray]], encoder: str, config: TrainConfig,
    say: Callable[[str], None] = log.info,
) -> dict[str, np.ndarray]:
    """Add a token-state head and its stack calibrator to ``parts``; returns the head's
    logit for every row of every source (for the stack and the test figures)."""
    names = config.token_heads[head]
    unknown = set(names) - set(prepared)
    if head in TITLE_HEADS or unknown:
        raise InvalidInput(
            f"token_heads[{head!r}]: only document heads read word pieces, from training "
            f"sources; unknown sources {sorted(unknown)}" if unknown else
            f"token_heads[{head!r}]: {head} is judged on titles, which have no word pieces "
            "in the served pass"
        )
    _, y_fit, _, weights = _stack_rows(prepared, head, "fit", config.source_balance,
                                       names=names)

    def rows_of(split: str) -> list[tuple[str, np.ndarray]]:
        return [(name, prepared[name].head_rows(head, split)) for name in prepared
                if name in names]

    fit_states = [states[name][i] for name, rows in rows_of("fit") for i in rows]
    calib = rows_of("calib")
    calib_states = [states[name][i] for name, rows in calib for i in rows]
    calib_y = np.concatenate([prepared[name].rows.targets[head][rows] for name, rows in calib])
    token = train_token_head(encoder, fit_states, y_fit, weights, calib_states, calib_y,
                             config.token_head, config.seed, say)
    logits = {name: token.logits(states[name]) for name in prepared}
    # The stack is fitted on every domain's calib rows, as the n-gram calibrator is:
    # the policy cannot know an item's source.
    ngram_p, token_z, y_calib = [], [], []
    for name, source in prepared.items():
        rows = source.head_rows(head, "calib")
        ngram_p.append(head_probability(parts, source.features(head)[rows],
                                        source.profanity_logit[rows]))
        token_z.append(logits[name][rows])
        y_calib.append(source.rows.targets[head][rows])
    parts["token"] = token.to_arrays()
    parts["stack_calibrator"] = LogisticRegression(
        C=1.0, max_iter=1000, random_state=config.seed,
    ).fit(stack_inputs(np.concatenate(ngram_p), np.concatenate(token_z)),
          np.concatenate(y_calib))
    return logits


def _test_figures(
    heads: dict[str, dict[str, Any]], prepared: dict[str, PreparedSource],
    capped_by: dict[str, str], token_logits: TokenLogits,
) -> dict[str, Any]:
    """Per head and source, on *test* rows: ranking figures and calibration error; the
    calibration error also on *calib* (what the calibrator saw) for comparison. A capped
    head is measured capped, and a head with a token-state part stacked, as the served
    model scores them."""

    def probability(head: str, name: str, rows: np.ndarray) -> np.ndarray:
        source = prepared[name]
        token = token_logits.get(head, {}).get(name)
        return head_probability(heads[head], source.features(head)[rows],
                                source.profanity_logit[rows],
                                None if token is None else token[rows])

    figures: dict[str, Any] = {}
    for head in heads:
        per_source: dict[str, Any] = {}
        for name, source in prepared.items():
            entry: dict[str, Any] = {}
            for split in ("test", "calib"):
                rows = source.head_rows(head, split)
                if not rows.size:
                    continue
                y = source.rows.targets[head][rows]
                p = probability(head, name, rows)
                cap = capped_by.get(head)
                if cap is not None:
                    p = np.minimum(p, probability(cap, name, rows))
                if split == "test":
                    entry.update(binary_report(y, p))
                else:
                    entry["calib_ece"] = expected_calibration_error(y, p)
            if entry:
                per_source[name] = entry
        figures[head] = per_source
    return figures


def train_text_risk(
    moderation_dir: Path,
    output_dir: Path,
    config: TrainConfig | None = None,
    *,
    clean_dir: Path | None = None,
    token_states: TokenStateCache | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainingResult:
    """Train every head on the shared datasets; write artifacts to ``output_dir``.

    ``moderation_dir`` holds the labelled moderation CSVs, ``clean_dir`` the
    ``taxonomy_dev`` files (default: ``moderation_dir/../taxonomy_dev``). Without
    ``token_states`` (the encoder's word pieces), no head gets a token-state part.
    """
    config = config or TrainConfig()
    say = progress or log.info
    clean = clean_dir if clean_dir is not None else moderation_dir.parent / "taxonomy_dev"
    prepared, vectorizers = prepare_sources(moderation_dir, clean, config, say)
    heads: dict[str, dict[str, Any]] = {}
    for head in HEAD_NAMES:
        say(f"training head {head}")
        heads[head] = train_head(head, prepared, config)
    token_logits: TokenLogits = {}
    if token_states is not None and config.token_heads:
        states = {name: token_states.states(name, source.rows.texts, say)
                  for name, source in prepared.items()}
        for head in config.token_heads:
            say(f"training the token-state part of head {head}")
            token_logits[head] = train_token_parts(
                head, heads[head], prepared, states, token_states.encoder, config, say)
    metrics = _test_figures(heads, prepared, config.capped_by, token_logits)
    bundle = {
        "format": artifacts.BUNDLE_FORMAT, "vectorizers": vectorizers, "heads": heads,
        "capped_by": dict(config.capped_by),
        "token_encoder": token_states.encoder if token_logits and token_states else None,
    }
    training_data = [
        {
            "source": name,
            "file": source.rows.spec.path,
            "sha256": source.rows.sha256,
            "sample_of_rows": source.rows.sample,
            "rows": len(source.rows),
            **{f"{split}_rows": int(source.splits[split].size) for split in source.splits},
            "rows_per_head": {
                head: {
                    "positive": int((source.rows.targets[head] == 1).sum()),
                    "negative": int((source.rows.targets[head] == 0).sum()),
                }
                for head in HEAD_NAMES
            },
        }
        for name, source in prepared.items()
    ]
    manifest = artifacts.save(
        output_dir, bundle, training_data=training_data, metrics=metrics,
        config={**asdict(config), "token_encoder": bundle["token_encoder"]},
    )
    say(json.dumps(metrics_summary(manifest), indent=2))
    return TrainingResult(output_dir=output_dir, manifest=manifest)


def metrics_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """Test-split ROC AUC and ECE per head and source, from a trained model's manifest."""
    return {
        head: {
            source: {"roc_auc": f.get("roc_auc"), "ece": f.get("ece"), "n": f.get("n")}
            for source, f in per_source.items()
        }
        for head, per_source in manifest["metrics"].items()
    }
