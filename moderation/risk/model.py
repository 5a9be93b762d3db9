"""``TextRiskModel``: calibrated text risk scores with evidence spans, for batches.

Loaded from a directory written by ``training.train_text_risk`` (the shipped one is
``moderation/risk/artifacts``), plus blocklists (``moderation/risk/blocklists``). It
returns one ``RiskScore`` per ``RiskCategory`` per text; ``heads.py`` says which head
scores which category.

Every head reads the same TF-IDF n-grams (one transform per batch); the abuse heads
(profanity, harassment, hate) also read alt-profanity-check's probability; harassment is
capped by profanity where the bundle says so (``heads.CAPPED_BY``). Hate, profanity and
spam also read the served encoder's word-piece states when the caller passes them
(``TokenStates``, from the text analyzer's own encoder pass; ``token_heads.py``): their
probability is then the stack calibrator's over both heads, and the scores name the full
model. Without the states, or with states of another encoder, every head is its n-gram
head alone, and the scores name ``<model>-ngram-only`` so that stored outputs say which
path scored them. Pooled sentence embeddings are accepted for interface compatibility
and not read (they added < 0.01 AUC on held-out data); the model never calls an encoder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from analyzers.base import TextEmbedder, TokenStates, TokenTextEmbedder
from core.contracts import Evidence, ModelRef, RiskCategory, RiskScore
from core.errors import InvalidConfig, InvalidInput, PayloadTooLarge
from core.registry import risk_models
from moderation.risk import artifacts
from moderation.risk.blocklist import DEFAULT_BLOCKLIST_DIR, Blocklist, load_blocklists
from moderation.risk.features import (
    logit,
    normalise_all,
    normalise_text,
    profanity_probability,
    transform,
    words_with_spans,
)
from moderation.risk.heads import CATEGORY_HEADS, apply_caps, head_probability, word_weights
from moderation.risk.token_heads import TokenHeadSet, TokenStateHead

log = logging.getLogger(__name__)

MAX_EVIDENCE_SPANS = 3
# Scores at or above this get evidence spans: the lowest review threshold the default
# policy sets for a category a head scores (hate 0.30), so every item it sends to a
# moderator for a model's score shows the words behind it (at 0.5, a hate score of
# 0.30-0.49 reached review with no span).
DEFAULT_EVIDENCE_THRESHOLD = 0.30
# A word is evidence only if it pushes at least this share of the top word's push: keeps
# "bitch" and drops the "stupid" far behind it.
RELATIVE_EVIDENCE_WEIGHT = 0.25
# A word scored alone by alt-profanity-check above this counts as a profane word.
PROFANE_WORD_PROBABILITY = 0.5
# Words that never make a span on their own: they carry grammar, not risk. Handles and
# links are folded to these tokens before scoring.
NON_EVIDENCE_WORDS = frozenset(ENGLISH_STOP_WORDS) | {
    "u", "ur", "ya", "im", "i'm", "rt", "user", "url", "don't", "it's", "you're", "http",
    "https", "www", "com",
}
NOT_A_HEADLINE = (
    "clickbait is assessed on titles/headlines only (its model learned from headlines)"
)


class TextRiskModel:
    """Scores texts for every text risk category; see the module docstring."""

    def __init__(
        self,
        manifest: dict[str, Any],
        bundle: dict[str, Any],
        blocklists: Sequence[Blocklist] = (),
        *,
        embedder: TextEmbedder | None = None,
        evidence_threshold: float = DEFAULT_EVIDENCE_THRESHOLD,
        max_text_chars: int = 100_000,
        source: str = "inline",
    ) -> None:
        self.manifest = manifest
        self._vectorizers: dict[str, Any] = bundle["vectorizers"]
        self._heads: dict[str, dict[str, Any]] = bundle["heads"]
        missing = set(CATEGORY_HEADS.values()) - set(self._heads)
        if missing:
            raise InvalidConfig(f"text risk bundle lacks heads {sorted(missing)}")
        # Which head's probability caps which (heads.CAPPED_BY); absent in older bundles.
        self._capped_by: dict[str, str] = dict(bundle.get("capped_by", {}))
        unknown = (set(self._capped_by) | set(self._capped_by.values())) - set(self._heads)
        if unknown:
            raise InvalidConfig(f"text risk bundle caps unknown heads {sorted(unknown)}")
        self.model = ModelRef(name=manifest["name"], version=manifest["version"], source=source)
        # Heads over the encoder's word pieces (absent in older bundles) and the encoder
        # they read; without its states, scores come from the n-gram heads alone.
        self._token_head_set = TokenHeadSet({
            name: TokenStateHead.from_arrays(parts["token"])
            for name, parts in self._heads.items() if "token" in parts
        })
        self.token_encoder: str | None = bundle.get("token_encoder")
        if any(h.encoder != self.token_encoder for h in self._token_head_set.heads.values()):
            raise InvalidConfig("text risk bundle's token heads read different encoders")
        self.ngram_only_model = (
            self.model if not self._token_head_set.heads else
            ModelRef(name=f"{manifest['name']}-ngram-only", version=manifest["version"],
                     source=source)
        )
        self.evidence_threshold = evidence_threshold
        self.max_text_chars = max_text_chars
        self.blocklists: dict[RiskCategory, list[Blocklist]] = {}
        for blocklist in blocklists:
            self.blocklists.setdefault(blocklist.category, []).append(blocklist)
        # Kept so callers can hand the pipeline's embedder over unchanged; never called.
        self.embedder = embedder
        if self._token_head_set.heads and embedder is not None and (
            embedder.model.id != self.token_encoder
            or not isinstance(embedder, TokenTextEmbedder)
        ):
            log.warning(
                "text risk heads read word pieces of %s, the pipeline's encoder is %s: "
                "scores come from the n-gram heads alone (%s)",
                self.token_encoder, embedder.model.id, self.ngram_only_model.id,
            )

    @classmethod
    def load(
        cls,
        path: Path | str = artifacts.DEFAULT_ARTIFACT_DIR,
        *,
        embedder: TextEmbedder | None = None,
        blocklist_dir: Path | str | None = DEFAULT_BLOCKLIST_DIR,
        evidence_threshold: float = DEFAULT_EVIDENCE_THRESHOLD,
    ) -> TextRiskModel:
        """Load a trained directory; refuses files whose sha256 differs from its config."""
        directory = Path(path)
        manifest = artifacts.TEXT_RISK.read_config(directory)
        bundle = artifacts.load_bundle(directory, manifest)
        blocklists = load_blocklists(Path(blocklist_dir)) if blocklist_dir is not None else []
        return cls(
            manifest, bundle, blocklists, embedder=embedder,
            evidence_threshold=evidence_threshold, source=f"path:{directory}",
        )

    # ------------------------------------------------------------------ scoring

    def _check_texts(self, texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str):
            raise InvalidInput("texts must be a sequence of strings, not one string")
        checked = list(texts)
        for index, text in enumerate(checked):
            if not isinstance(text, str):
                raise InvalidInput(
                    f"texts[{index}] is {type(text).__name__}, expected str", index=index
                )
            if len(text) > self.max_text_chars:
                raise PayloadTooLarge(
                    f"texts[{index}] has {len(text)} characters; the text risk model takes at "
                    f"most {self.max_text_chars}",
                    index=index, limit=self.max_text_chars,
                )
        return checked

    def _check_embeddings(self, embeddings: np.ndarray, count: int) -> None:
        """Embeddings are not read by this version; a wrong batch is still refused."""
        array = np.asarray(embeddings)
        if array.ndim != 2 or array.shape[0] != count:
            raise InvalidInput(
                f"embeddings have shape {array.shape}; expected one row per text ({count})"
            )

    def reads_token_states(self, token_states: TokenStates | None) -> bool:
        """Whether these states feed the token-state heads: this bundle has such heads
        and the states come from the encoder they were trained on."""
        return (bool(self._token_head_set.heads) and token_states is not None
                and token_states.encoder == self.token_encoder)

    def head_probabilities(
        self,
        texts: Sequence[str],
        embeddings: np.ndarray | None = None,
        *,
        heads: Sequence[str] | None = None,
        token_states: TokenStates | None = None,
    ) -> tuple[dict[str, np.ndarray], bool]:
        """Calibrated probability of every head (or of ``heads``) for every text, and
        whether the token states were read (``reads_token_states``)."""
        checked = self._check_texts(texts)
        if embeddings is not None:
            self._check_embeddings(embeddings, len(checked))
        use_tokens = self.reads_token_states(token_states)
        if use_tokens:
            assert token_states is not None
            if len(token_states.states) != len(checked):
                raise InvalidInput(
                    f"token states for {len(token_states.states)} texts; expected one per "
                    f"text ({len(checked)})"
                )
        wanted = list(heads) if heads is not None else list(self._heads)
        if not checked:
            return {name: np.zeros(0) for name in wanted}, use_tokens
        # A capped head needs its capping head's probability too.
        computed = list(dict.fromkeys(
            wanted + [self._capped_by[n] for n in wanted if n in self._capped_by]
        ))
        features = transform(self._vectorizers, normalise_all(checked))
        needs_profanity = any(self._heads[name]["uses_profanity_check"] for name in computed)
        profanity = logit(profanity_probability(checked)) if needs_profanity else None
        token_logits = (
            self._token_head_set.logits(
                token_states.states, [n for n in computed if n in self._token_head_set.heads])
            if use_tokens and token_states is not None else {}
        )
        probabilities = apply_caps({
            name: head_probability(self._heads[name], features, profanity, token_logits.get(name))
            for name in computed
        }, self._capped_by)
        return {name: probabilities[name] for name in wanted}, use_tokens

    def score_items(
        self,
        titles: Sequence[str],
        documents: Sequence[str],
        embeddings: np.ndarray | None = None,
        token_states: TokenStates | None = None,
    ) -> list[list[RiskScore]]:
        """Scores for items: every head on the document (title + body), except clickbait,
        which is judged on the title alone (the head learned from headlines and calls
        ordinary prose clickbait); an item without a title gets clickbait not assessed.
        ``token_states``: the documents' word-piece states from the analyzer's pass."""
        scores = self.score(documents, embeddings, headlines=False, token_states=token_states)
        titled = [i for i, title in enumerate(titles) if title.strip()]
        if not titled:
            return scores
        title_texts = self._check_texts([titles[i] for i in titled])
        head = CATEGORY_HEADS[RiskCategory.CLICKBAIT]
        probabilities, _ = self.head_probabilities(title_texts, heads=[head])
        # Clickbait has no token-state part: its score is the same either way, and it
        # names the model that scored the item's other categories.
        model = self.model if self.reads_token_states(token_states) else self.ngram_only_model
        evidence = self._model_evidence(title_texts, probabilities, model)
        for row, i in enumerate(titled):
            clickbait = self._apply_blocklists(
                RiskCategory.CLICKBAIT, title_texts[row],
                RiskScore(
                    category=RiskCategory.CLICKBAIT, score=float(probabilities[head][row]),
                    model=model.id, evidence=evidence[(RiskCategory.CLICKBAIT, row)],
                ),
            )
            scores[i] = [clickbait if s.category == RiskCategory.CLICKBAIT else s
                         for s in scores[i]]
        return scores

    def score(
        self,
        texts: Sequence[str],
        embeddings: np.ndarray | None = None,
        *,
        headlines: bool | Sequence[bool] = True,
        token_states: TokenStates | None = None,
    ) -> list[list[RiskScore]]:
        """One ``RiskScore`` per ``RiskCategory`` (contract order) for each text.

        ``embeddings``: accepted for compatibility (one row per text); not read.
        ``token_states``: each text's word-piece states (see the module docstring).

        ``headlines``: whether each text is a title/headline. The clickbait head learned
        from news headlines and calls most casual prose clickbait, so for texts marked
        ``False`` (bodies, comments) clickbait is reported as not assessed.
        """
        checked = self._check_texts(texts)
        is_headline = self._check_headlines(headlines, len(checked))
        heads = [
            head for category, head in CATEGORY_HEADS.items()
            if category is not RiskCategory.CLICKBAIT or any(is_headline)
        ]
        probabilities, used_tokens = self.head_probabilities(
            checked, embeddings, heads=heads, token_states=token_states
        )
        model = self.model if used_tokens else self.ngram_only_model
        evidence = self._model_evidence(
            checked, probabilities, model, token_states if used_tokens else None
        )
        results: list[list[RiskScore]] = []
        for row, text in enumerate(checked):
            if not text.strip():
                results.append([
                    RiskScore(category=c, not_assessed_reason="text is empty") for c in RiskCategory
                ])
                continue
            scores: list[RiskScore] = []
            for category in RiskCategory:
                head = CATEGORY_HEADS.get(category)
                if category is RiskCategory.CLICKBAIT and not is_headline[row]:
                    scores.append(self._apply_blocklists(
                        category, text, None, no_model_reason=NOT_A_HEADLINE
                    ))
                    continue
                model_score = (
                    None if head is None else
                    RiskScore(
                        category=category, score=float(probabilities[head][row]),
                        model=model.id, evidence=evidence[(category, row)],
                    )
                )
                scores.append(self._apply_blocklists(category, text, model_score))
            results.append(scores)
        return results

    def _check_headlines(self, headlines: bool | Sequence[bool], count: int) -> list[bool]:
        if isinstance(headlines, bool):
            return [headlines] * count
        flags = list(headlines)
        if len(flags) != count or not all(isinstance(f, bool) for f in flags):
            raise InvalidInput(
                f"headlines must be one bool or {count} bools (one per text); got {len(flags)} "
                "values"
            )
        return flags

    def _apply_blocklists(
        self,
        category: RiskCategory,
        text: str,
        model_score: RiskScore | None,
        *,
        no_model_reason: str = "no text model for this category",
    ) -> RiskScore:
        lists = self.blocklists.get(category, [])
        best: tuple[float, Blocklist] | None = None
        found: list[Evidence] = []
        for blocklist in lists:
            matches = blocklist.find(text)
            if matches:
                found.extend(blocklist.evidence(matches))
                severity = max(m.severity for m in matches)
                if best is None or severity > best[0]:
                    best = (severity, blocklist)
        if model_score is not None:
            if best is None:
                return model_score
            assert model_score.score is not None
            if best[0] > model_score.score:
                # The list, not the model, set this score: the stored output says so.
                return RiskScore(
                    category=category, score=best[0], model=best[1].model.id,
                    evidence=found + model_score.evidence,
                )
            return model_score.model_copy(update={"evidence": model_score.evidence + found})
        if best is not None:
            return RiskScore(
                category=category, score=best[0], model=best[1].model.id, evidence=found
            )
        if lists:
            names = ", ".join(f"{b.name} ({len(b)} terms)" for b in lists)
            reason = (
                f"{no_model_reason}; blocklist {names} found no term, and a "
                "term list cannot show a text is free of it"
            )
        else:
            reason = f"{no_model_reason}; no blocklist configured for this category"
        return RiskScore(category=category, not_assessed_reason=reason)

    # ----------------------------------------------------------------- evidence

    def _model_evidence(
        self, texts: list[str], probabilities: dict[str, np.ndarray], model: ModelRef,
        token_states: TokenStates | None = None,
    ) -> dict[tuple[RiskCategory, int], list[Evidence]]:
        """Spans for texts a head flags: the words that pushed its n-gram model up most,
        plus, for profanity, the words alt-profanity-check calls profane on their own,
        plus, where the head read ``token_states`` with their offsets, the words whose
        pieces pushed its token-state part most (not repeating a span). Stop words never
        make a span; each span names its category and this model."""
        evidence: dict[tuple[RiskCategory, int], list[Evidence]] = {
            (category, row): [] for category in CATEGORY_HEADS for row in range(len(texts))
        }
        word_spans: dict[int, list[tuple[int, int, str]]] = {}
        for category, head in CATEGORY_HEADS.items():
            if head not in probabilities:
                continue
            flagged = [
                int(r) for r in np.flatnonzero(probabilities[head] >= self.evidence_threshold)
            ]
            for row in flagged:
                if row not in word_spans:
                    word_spans[row] = [
                        span for span in words_with_spans(texts[row])
                        if span[2].lower() not in NON_EVIDENCE_WORDS
                    ]
            spans = self._top_words(category, head, [word_spans[r] for r in flagged], model)
            for row, row_spans in zip(flagged, spans, strict=True):
                evidence[(category, row)].extend(row_spans)
            if category is RiskCategory.PROFANITY:
                for row, profane in self._profane_words(flagged, word_spans, model).items():
                    current = evidence[(category, row)]
                    taken = {(e.start, e.end) for e in current}
                    # Profane words first: for profanity they are the most direct evidence.
                    current[:0] = [e for e in profane if (e.start, e.end) not in taken]
            if (token_states is not None and token_states.offsets is not None
                    and head in self._token_head_set.heads):
                for row in flagged:
                    current = evidence[(category, row)]
                    taken = {(e.start, e.end) for e in current}
                    current.extend(e for e in self._top_pieces(
                        category, head, word_spans[row], token_states.states[row],
                        token_states.offsets[row], model,
                    ) if (e.start, e.end) not in taken)
        return evidence

    def _top_pieces(
        self, category: RiskCategory, head: str, words: list[tuple[int, int, str]],
        states: np.ndarray, offsets: np.ndarray, model: ModelRef,
    ) -> list[Evidence]:
        """The words whose pieces pushed the head's token-state part most: each piece's
        exact share of its logit (``piece_contributions``), summed over the word, scaled
        by the stack calibrator's weight on that logit."""
        scale = float(np.asarray(self._heads[head]["stack_calibrator"].coef_).ravel()[1])
        (share,) = self._token_head_set.heads[head].piece_contributions([states])
        spans = np.asarray(offsets).reshape(-1, 2)
        weights = np.array([
            scale * share[(spans[:, 0] >= start) & (spans[:, 1] <= end)].sum()
            for start, end, _ in words
        ])
        return _strongest_words(words, weights, f"{category.value} ({model.id}): word-piece")

    def _top_words(
        self, category: RiskCategory, head: str, rows: list[list[tuple[int, int, str]]],
        model: ModelRef,
    ) -> list[list[Evidence]]:
        flat = [word for words in rows for word in words]
        if not flat:
            return [[] for _ in rows]
        # Texts repeat words a lot: each distinct word is vectorised once per call.
        keys = [normalise_text(w[2]).lower() for w in flat]
        distinct = list(dict.fromkeys(keys))
        position = {key: i for i, key in enumerate(distinct)}
        features = transform(self._vectorizers, distinct)
        # The word's own push on the head's n-gram model (its char n-grams and itself).
        coef = word_weights(self._heads[head])
        per_word = np.asarray(features @ coef).ravel()
        contributions = per_word[[position[key] for key in keys]]
        out: list[list[Evidence]] = []
        offset = 0
        for words in rows:
            weights = contributions[offset : offset + len(words)]
            offset += len(words)
            out.append(_strongest_words(words, weights, f"{category.value} ({model.id}): n-gram"))
        return out

    def _profane_words(
        self, rows: list[int], word_spans: dict[int, list[tuple[int, int, str]]],
        model: ModelRef,
    ) -> dict[int, list[Evidence]]:
        flat = [(row, span) for row in rows for span in word_spans[row]]
        if not flat:
            return {}
        keys = [span[2].lower() for _, span in flat]
        distinct = list(dict.fromkeys(keys))
        per_word = dict(zip(distinct, profanity_probability(distinct), strict=True))
        found: dict[int, list[Evidence]] = {}
        for (row, (start, end, word)), key in zip(flat, keys, strict=True):
            p = per_word[key]
            if p >= PROFANE_WORD_PROBABILITY:
                found.setdefault(row, []).append(
                    Evidence(
                        kind="text_span", start=start, end=end, text=word,
                        detail=f"profanity ({model.id}): alt-profanity-check "
                        f"p={p:.2f} for this word alone",
                    )
                )
        return found


def _strongest_words(
    words: list[tuple[int, int, str]], weights: np.ndarray, label: str
) -> list[Evidence]:
    """Spans for the words pushing the score most (at most ``MAX_EVIDENCE_SPANS``, each
    pushing up and at least ``RELATIVE_EVIDENCE_WEIGHT`` of the top push), in text order;
    ``label`` starts each span's detail ("hate (model): n-gram")."""
    top = float(weights.max()) if len(weights) else 0.0
    order = [
        i for i in np.argsort(-weights, kind="stable")
        if weights[i] > 0 and weights[i] >= RELATIVE_EVIDENCE_WEIGHT * top
    ]
    return [
        Evidence(kind="text_span", start=words[i][0], end=words[i][1], text=words[i][2],
                 detail=f"{label} weight {weights[i]:.2f}")
        for i in sorted(order[:MAX_EVIDENCE_SPANS], key=lambda i: words[i][0])
    ]


@risk_models.register(artifacts.MODEL_NAME)
def make_text_risk_model(
    path: Path | str | None = None,
    embedder: TextEmbedder | None = None,
    blocklist_dir: Path | str | None = DEFAULT_BLOCKLIST_DIR,
    evidence_threshold: float = DEFAULT_EVIDENCE_THRESHOLD,
) -> TextRiskModel:
    return TextRiskModel.load(
        path or artifacts.DEFAULT_ARTIFACT_DIR, embedder=embedder,
        blocklist_dir=blocklist_dir, evidence_threshold=evidence_threshold,
    )
