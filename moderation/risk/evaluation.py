"""``reelsift evaluate risk``: the shipped text risk model measured on held-out data.

Everything here scores through the real ``TextRiskModel.score_items`` (blocklists
included) and routes through the real ``Policy``; nothing is read back from the
manifest except the split seed and fractions, so the *test* rows are exactly the ones
training held out. Figures (all ``sklearn.metrics``):

* per category and labelled source: ROC AUC, precision at recall 0.95, recall at
  precision 0.50 and accuracy at the policy's review threshold, beside a baseline from
  an established method computed in the same run (alt-profanity-check for the abuse
  categories; a word TF-IDF logistic regression trained on that source's own *fit* rows
  for spam and clickbait: what a single-domain model reaches);
* OLID's three levels: offensive vs not (macro-F1), targeted vs untargeted, individual
  vs group;
* expected calibration error per head and source;
* per clean dev set (newsgroups outside politics/religion, Wikipedia abstracts, BBC
  articles): the share of items the default policy sends to review, overall and per
  category;
* issue 14's targets, each figure with its 95% interval (``core.targets``: bootstrap
  over the test rows, Wilson's for shares) and whether the goal lies inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from analyzers.base import TokenStates
from analyzers.text import document_text
from core.artifacts import file_sha256
from core.contracts import RiskCategory, RiskScore
from core.targets import Target, TargetCheck, bootstrap_check, share_check
from moderation.policy import Policy, Route
from moderation.risk.datasets import (
    CLEAN_DEV_SOURCES,
    NOT_USED,
    SOURCES,
    SourceRows,
    load_sources,
    source_path,
    split_rows,
    stratified_sample,
)
from moderation.risk.features import profanity_probability
from moderation.risk.heads import CATEGORY_HEADS
from moderation.risk.metrics import (
    best_macro_f1_threshold,
    expected_calibration_error,
    precision_at_recall,
    recall_at_precision,
)
from moderation.risk.model import TextRiskModel
from moderation.risk.token_heads import TokenStateCache

ABUSE_CATEGORIES = (RiskCategory.PROFANITY, RiskCategory.HARASSMENT, RiskCategory.HATE)
# Which labelled sources measure which category (sources with positives for its head).
LABELLED: dict[RiskCategory, tuple[str, ...]] = {
    RiskCategory.PROFANITY: ("davidson", "olid"),
    RiskCategory.HARASSMENT: ("davidson", "olid"),
    RiskCategory.HATE: ("davidson", "olid"),
    RiskCategory.SPAM: ("sms", "youtube"),
    RiskCategory.CLICKBAIT: ("clickbait",),
}
TITLED_SOURCES = frozenset({"clickbait", "newsgroups", "bbc"})

ISSUE = 14
# Issue 14's targets on labelled test rows: (category row, source) -> (figure, goal).
LABELLED_TARGETS: dict[tuple[str, str], tuple[tuple[str, float], ...]] = {
    ("abusive (max of 3)", "davidson"): (("roc_auc", 0.99), ("precision_at_recall_0.95", 0.99)),
    ("spam", "sms"): (("accuracy_at_threshold", 0.99),),
    ("spam", "youtube"): (("accuracy_at_threshold", 0.95),),
    ("clickbait", "clickbait"): (("accuracy_at_threshold", 0.97),),
    ("hate", "davidson"): (("roc_auc", 0.90), ("recall_at_precision_0.50", 0.60)),
}
OLID_MACRO_F1_GOAL = 0.83
CLEAN_TO_REVIEW_GOAL = 0.01  # at most, per clean dev set
CLEAN_ONE_CATEGORY_GOAL = 0.005  # at most, for the category that sends the most there
FIGURE_NAMES = {
    "roc_auc": "AUC", "precision_at_recall_0.95": "precision at recall 0.95",
    "recall_at_precision_0.50": "recall at precision 0.50",
    "accuracy_at_threshold": "accuracy at the policy threshold",
}
# The ranking figures of every labelled row, as functions of (targets, scores): the
# table computes them once, the targets' bootstrap once per resample.
RANKING_STATISTICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "roc_auc": lambda y, s: float(roc_auc_score(y, s)),
    "precision_at_recall_0.95": lambda y, s: precision_at_recall(y, s, 0.95),
    "recall_at_precision_0.50": lambda y, s: recall_at_precision(y, s, 0.50),
}


@dataclass
class ScoredSource:
    name: str
    rows: SourceRows
    test: np.ndarray
    calib: np.ndarray
    scores: dict[RiskCategory, np.ndarray]  # final score per test row (nan: not assessed)
    calib_scores: dict[RiskCategory, np.ndarray]
    routes: list[Route]
    route_categories: list[list[RiskCategory]]


@dataclass
class Evaluation:
    model: str
    policy: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # per category and source
    olid: dict[str, Any] = field(default_factory=dict)
    ece: dict[str, dict[str, float]] = field(default_factory=dict)
    clean: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: list[TargetCheck] = field(default_factory=list)
    data_matches_training: bool = True
    notes: list[str] = field(default_factory=list)
    baselines: list[InDomainBaseline] = field(default_factory=list, repr=False)


def _items(rows: SourceRows, indices: np.ndarray) -> tuple[list[str], list[str]]:
    """Titles and ingest documents (``title\\nbody``) of the given rows."""
    titles, documents = [], []
    for i in indices:
        text, title = rows.texts[i], rows.titles[i]
        if rows.spec.name == "clickbait":
            titles.append(text)
            documents.append(text)
        elif rows.spec.name in TITLED_SOURCES and title:
            body = text[len(title):].lstrip("\n") if text.startswith(title) else text
            titles.append(title)
            documents.append(document_text(title, body) if body else title)
        else:
            titles.append("")
            documents.append(text)
    return titles, documents


def _score(
    model: TextRiskModel, rows: SourceRows, indices: np.ndarray,
    states: list[np.ndarray] | None = None, batch: int = 512,
) -> list[list[RiskScore]]:
    """Scores of the given rows as items; ``states``: the word-piece states of every row's
    document (all rows of the source), as the text analyzer hands them to the model."""
    titles, documents = _items(rows, indices)
    out: list[list[RiskScore]] = []
    for start in range(0, len(documents), batch):
        chunk = indices[start : start + batch]
        token_states = (
            None if states is None or model.token_encoder is None
            else TokenStates(model.token_encoder, [states[i] for i in chunk])
        )
        out.extend(model.score_items(
            titles[start : start + batch], documents[start : start + batch],
            token_states=token_states,
        ))
    return out


def _matrix(scored: list[list[RiskScore]]) -> dict[RiskCategory, np.ndarray]:
    values = {c: np.full(len(scored), np.nan) for c in RiskCategory}
    for row, scores in enumerate(scored):
        for s in scores:
            if s.score is not None:
                values[s.category][row] = s.score
    return values


def _figures(y: np.ndarray, score: np.ndarray, threshold: float | None) -> dict[str, Any]:
    return {
        "n": len(y),
        "positives": int(y.sum()),
        **{figure: statistic(y, score) for figure, statistic in RANKING_STATISTICS.items()},
        "accuracy_at_threshold": (
            None if threshold is None else float(np.mean((score >= threshold) == y))
        ),
        "threshold": threshold,
        # The calibrated model's own decision point, where earlier figures were taken.
        "accuracy_at_0.5": float(np.mean((score >= 0.5) == y)),
    }


@dataclass
class InDomainBaseline:
    """A word TF-IDF logistic regression trained on one source's fit rows alone."""

    head: str
    source: str
    vectorizer: Any
    model: Any

    @classmethod
    def fit(cls, rows: SourceRows, head: str, fit: np.ndarray, seed: int) -> InDomainBaseline:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        fit = fit[rows.targets[head][fit] != NOT_USED]
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        x_fit = vectorizer.fit_transform(rows.head_texts(head, fit))
        model = LogisticRegression(C=4.0, solver="liblinear", random_state=seed)
        model.fit(x_fit, rows.targets[head][fit])
        return cls(head=head, source=rows.spec.name, vectorizer=vectorizer, model=model)

    def probability(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.predict_proba(self.vectorizer.transform(texts))[:, 1])


def evaluate(
    model: TextRiskModel,
    policy: Policy,
    moderation_dir: Path,
    clean_dir: Path,
    token_cache: TokenStateCache | None = None,
) -> Evaluation:
    """``token_cache``: the encoder whose word-piece states the model's token-state heads
    read; without it (or when its encoder is not theirs) every row is scored as a caller
    without states would be, by the n-gram heads alone."""
    config = model.manifest.get("config", {})
    seed = int(config.get("seed", 13))
    test_fraction = float(config.get("test_fraction", 0.2))
    calib_fraction = float(config.get("calib_fraction", 0.1))
    max_rows = config.get("max_rows_per_source")
    result = Evaluation(model=model.model.id, policy=f"{policy.source} ({policy.version})")
    # The cache whose states the model reads, if any (the same test as the service's).
    states_from = (
        token_cache if token_cache is not None and model.token_encoder == token_cache.encoder
        else None
    )
    if model.token_encoder is not None and states_from is None:
        result.model = model.ngram_only_model.id
        result.notes.append(
            f"scored without word-piece states of {model.token_encoder}: every head is its "
            "n-gram head alone, as for a caller without them"
        )
    trained_on = {d["source"]: d["sha256"] for d in model.manifest.get("training_data", [])}
    for spec in SOURCES:
        if spec.name in trained_on:
            actual = file_sha256(source_path(spec, moderation_dir, clean_dir))
            if actual != trained_on[spec.name]:
                result.data_matches_training = False
                result.notes.append(
                    f"{spec.path} differs from the file the model was trained on: its split "
                    "is not the training holdout, figures may include training rows"
                )
    sources = load_sources(moderation_dir, clean_dir)
    scored: dict[str, ScoredSource] = {}
    for name, rows in sources.items():
        if max_rows is not None and not rows.spec.measure_only:
            rows = stratified_sample(rows, int(max_rows), seed)
        splits = split_rows(rows, seed, test_fraction, calib_fraction)
        states = (
            states_from.states(name, _items(rows, np.arange(len(rows)))[1])
            if states_from is not None else None
        )
        test_scores = _score(model, rows, splits["test"], states)
        decisions = [policy.route(s) for s in test_scores]
        calib = splits["calib"]
        scored[name] = ScoredSource(
            name=name, rows=rows, test=splits["test"], calib=calib,
            scores=_matrix(test_scores),
            calib_scores=_matrix(_score(model, rows, calib, states)) if name == "olid" else {},
            routes=[d.route for d in decisions],
            route_categories=[d.categories for d in decisions],
        )

    labelled = _labelled_rows(result, scored, policy, seed)
    result.targets.extend(_labelled_target_checks(labelled))
    result.targets.append(_olid_levels(result, scored["olid"], policy))
    for category, head in CATEGORY_HEADS.items():
        per_source: dict[str, float] = {}
        for name, source in scored.items():
            if source.rows.spec.measure_only:
                continue
            targets = source.rows.targets[head][source.test]
            score = source.scores[category]
            keep = (targets != NOT_USED) & ~np.isnan(score)
            if keep.any():
                per_source[name] = expected_calibration_error(targets[keep], score[keep])
        result.ece[category.value] = per_source
    for name in CLEAN_DEV_SOURCES:
        source = scored[name]
        n = len(source.routes)
        reviewed = sum(route is not Route.APPROVE for route in source.routes)
        counts = {c: sum(c in cats for cats in source.route_categories) for c in RiskCategory}
        per_category = {c.value: count / max(n, 1) for c, count in counts.items()}
        worst = max(counts, key=lambda c: counts[c])
        result.targets.append(share_check(Target(
            f"{name}: share sent to review", CLEAN_TO_REVIEW_GOAL, at_most=True, issue=ISSUE,
        ), reviewed, n))
        result.targets.append(share_check(Target(
            f"{name}: share sent to review for {worst.value} (the largest category)",
            CLEAN_ONE_CATEGORY_GOAL, at_most=True, issue=ISSUE,
        ), counts[worst], n))
        titles, documents = _items(source.rows, source.test)
        # What single-domain models (the in-domain baselines above) would flag at 0.5.
        baseline_flags = {
            f"{b.head} ({b.source}-only LR)": float(np.mean(b.probability(
                [t for t in titles if t] if b.head == "clickbait" else documents
            ) >= 0.5)) if (b.head != "clickbait" or any(titles)) else None
            for b in result.baselines
        }
        result.clean[name] = {
            "n": n, "reaches_review": reviewed / max(n, 1), "per_category": per_category,
            "baseline_share_at_0.5": baseline_flags,
            "examples": [
                (source.rows.titles[source.test[i]] or source.rows.texts[source.test[i]][:80],
                 [c.value for c in source.route_categories[i]])
                for i in range(n) if source.routes[i] is not Route.APPROVE
            ][:5],
        }
    return result


Labelled = dict[tuple[str, str], tuple[np.ndarray, np.ndarray, float]]


def _labelled_rows(
    result: Evaluation, scored: dict[str, ScoredSource], policy: Policy, seed: int
) -> Labelled:
    """Figures per category and labelled source; returns each row's targets, scores and
    threshold, keyed like ``LABELLED_TARGETS``."""
    labelled: Labelled = {}
    profanity_check: dict[str, np.ndarray] = {}
    for category, names in LABELLED.items():
        head = CATEGORY_HEADS[category]
        threshold = policy.category(category).review
        for name in names:
            source = scored[name]
            targets = source.rows.targets[head][source.test]
            score = source.scores[category]
            keep = (targets != NOT_USED) & ~np.isnan(score)
            y, s = targets[keep].astype(int), score[keep]
            row = {"category": category.value, "source": name, **_figures(y, s, threshold)}
            labelled[(category.value, name)] = (y, s, threshold)
            if category in ABUSE_CATEGORIES:
                if name not in profanity_check:
                    texts = [source.rows.texts[i] for i in source.test]
                    profanity_check[name] = profanity_probability(texts)
                baseline = profanity_check[name][keep]
                row["baseline"] = {"method": "alt-profanity-check", **_figures(y, baseline, 0.5)}
            else:
                fit = split_rows(source.rows, seed)["fit"]
                in_domain = InDomainBaseline.fit(source.rows, head, fit, seed)
                result.baselines.append(in_domain)
                baseline = in_domain.probability(source.rows.head_texts(head, source.test[keep]))
                row["baseline"] = {
                    "method": f"word TF-IDF LR on {name} fit rows only",
                    **_figures(y, baseline, 0.5),
                }
            result.rows.append(row)
    # The kept target: abusive (any of the three) vs clean, on held-out Davidson tweets.
    for name in ("davidson", "olid"):
        source = scored[name]
        y = source.rows.targets["profanity"][source.test].astype(int)
        score = np.nanmax(np.column_stack([source.scores[c] for c in ABUSE_CATEGORIES]), axis=1)
        threshold = min(policy.category(c).review for c in ABUSE_CATEGORIES)
        texts = [source.rows.texts[i] for i in source.test]
        baseline = profanity_check.get(name)
        if baseline is None:
            baseline = profanity_probability(texts)
        result.rows.append({
            "category": "abusive (max of 3)", "source": name, **_figures(y, score, threshold),
            "baseline": {"method": "alt-profanity-check", **_figures(y, baseline, 0.5)},
        })
        labelled[("abusive (max of 3)", name)] = (y, score, threshold)
    return labelled


def _labelled_target_checks(labelled: Labelled) -> list[TargetCheck]:
    checks = []
    for (category, name), figures in LABELLED_TARGETS.items():
        y, score, threshold = labelled[(category, name)]
        for figure, goal in figures:
            target = Target(f"{category} {FIGURE_NAMES[figure]}, {name} test rows", goal,
                            issue=ISSUE)
            if figure == "accuracy_at_threshold":
                correct = int(np.sum((score >= threshold) == y))
                checks.append(share_check(target, correct, len(y)))
            else:
                checks.append(bootstrap_check(target, RANKING_STATISTICS[figure], y, score))
    return checks


def _olid_levels(result: Evaluation, olid: ScoredSource, policy: Policy) -> TargetCheck:
    """OLID's three levels into ``result.olid``; returns the offensive-vs-not target."""
    raw_test = [olid.rows.raw[i] for i in olid.test]
    raw_calib = [olid.rows.raw[i] for i in olid.calib]
    profanity = olid.scores[RiskCategory.PROFANITY]
    offensive = np.array([r["offensive"] == "OFF" for r in raw_test], dtype=int)
    calib_offensive = np.array([r["offensive"] == "OFF" for r in raw_calib], dtype=int)
    chosen = best_macro_f1_threshold(calib_offensive, olid.calib_scores[RiskCategory.PROFANITY])
    policy_threshold = policy.category(RiskCategory.PROFANITY).review
    baseline = profanity_probability([olid.rows.texts[i] for i in olid.test])
    level_a = {
        "n": len(offensive), "positives": int(offensive.sum()),
        "roc_auc": float(roc_auc_score(offensive, profanity)),
        "macro_f1_at_calib_threshold": float(
            f1_score(offensive, profanity >= chosen, average="macro")
        ),
        "calib_threshold": chosen,
        "macro_f1_at_policy_threshold": float(
            f1_score(offensive, profanity >= policy_threshold, average="macro")
        ),
        "policy_threshold": policy_threshold,
        "baseline_alt_profanity_check_macro_f1_at_0.5": float(
            f1_score(offensive, baseline >= 0.5, average="macro")
        ),
        "baseline_alt_profanity_check_roc_auc": float(roc_auc_score(offensive, baseline)),
    }
    # Level B: among offensive tweets, targeted (TIN) vs untargeted (UNT).
    targeted_score = np.fmax(olid.scores[RiskCategory.HARASSMENT], olid.scores[RiskCategory.HATE])
    calib_targeted = np.fmax(
        olid.calib_scores[RiskCategory.HARASSMENT], olid.calib_scores[RiskCategory.HATE]
    )
    off = offensive == 1
    tin = np.array([r["offense_type"] == "TIN" for r in raw_test], dtype=int)
    calib_off = calib_offensive == 1
    calib_tin = np.array([r["offense_type"] == "TIN" for r in raw_calib], dtype=int)
    b_threshold = best_macro_f1_threshold(calib_tin[calib_off], calib_targeted[calib_off])
    level_b = {
        "n": int(off.sum()), "targeted": int(tin[off].sum()),
        "score": "max(harassment, hate)",
        "roc_auc": float(roc_auc_score(tin[off], targeted_score[off])),
        "macro_f1_at_calib_threshold": float(
            f1_score(tin[off], targeted_score[off] >= b_threshold, average="macro")
        ),
        "calib_threshold": b_threshold,
        "majority_class_macro_f1": float(
            f1_score(tin[off], np.ones(int(off.sum()), dtype=int), average="macro")
        ),
    }
    # Level C: among targeted insults at a person or a group, group (GRP) vs person (IND).
    target = np.array([r["target"] for r in raw_test])
    ind_grp = np.isin(target, ["IND", "GRP"]) & (tin == 1)
    grp = (target[ind_grp] == "GRP").astype(int)
    margin = olid.scores[RiskCategory.HATE][ind_grp] - olid.scores[RiskCategory.HARASSMENT][ind_grp]
    level_c = {
        "n": int(ind_grp.sum()), "group": int(grp.sum()),
        "score": "hate - harassment",
        "roc_auc": float(roc_auc_score(grp, margin)),
        "macro_f1_hate_above_harassment": float(f1_score(grp, margin > 0, average="macro")),
        "majority_class_macro_f1": float(
            f1_score(grp, np.zeros(len(grp), dtype=int), average="macro")
        ),
    }
    result.olid = {"offensive_vs_not": level_a, "targeted_vs_untargeted": level_b,
                   "individual_vs_group": level_c}
    return bootstrap_check(
        Target("OLID offensive vs not, macro-F1 at the calib threshold, OLID test rows",
               OLID_MACRO_F1_GOAL, issue=ISSUE),
        lambda y, s: float(f1_score(y, s >= chosen, average="macro")), offensive, profanity,
    )
