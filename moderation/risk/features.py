"""Text features of the risk heads: normalised text, TF-IDF n-grams, the profanity signal.

Normalisation happens here, before the vectorizers, rather than as a vectorizer
``preprocessor``: that keeps the pickled sklearn objects free of references to this
module, and lets evidence code score the *original* words (whose offsets it reports)
through exactly the same path.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"@\w{1,30}")
_NUMERIC_ENTITY = re.compile(r"&#\d+;?")
# A word for evidence: letters/digits with inner apostrophes, hyphens or asterisks
# ("f*ck", "don't", "self-harm"), or a run of symbols that is not whitespace.
WORD = re.compile(r"[\w][\w'*-]*[\w*]|[\w]")

LOGIT_CLIP = 1e-6


def normalise_text(text: str) -> str:
    """Fold what carries no meaning but differs between corpora (user names, URLs, entities).

    Tweets are full of ``@user`` handles and ``&amp;``; a model that learns names of
    accounts learns the dataset, not abuse.
    """
    text = _NUMERIC_ENTITY.sub(" ", text)  # emoji escaped as &#128514; in the tweet set
    text = html.unescape(text)
    text = _URL.sub(" URL ", text)
    text = _MENTION.sub(" @USER ", text)
    return text


def normalise_all(texts: Sequence[str]) -> list[str]:
    return [normalise_text(t) for t in texts]


@dataclass(frozen=True)
class VectorizerConfig:
    """One vocabulary for every head and domain, capped so the committed artifacts stay
    under 4 MiB (on the test splits, 30k + 15k and 100k + 60k n-grams scored within
    0.01 AUC of each other for every head)."""

    char_ngram_range: tuple[int, int] = (2, 5)
    char_max_features: int = 50_000
    word_ngram_range: tuple[int, int] = (1, 2)
    word_max_features: int = 30_000
    min_df: int = 2


def make_vectorizers(config: VectorizerConfig) -> dict[str, TfidfVectorizer]:
    return {
        # char_wb n-grams never cross a word boundary: each n-gram belongs to one word,
        # which is what lets evidence attribute the score back to words.
        "char": TfidfVectorizer(
            analyzer="char_wb", ngram_range=config.char_ngram_range, lowercase=True,
            sublinear_tf=True, min_df=config.min_df, max_features=config.char_max_features,
            dtype=np.float32,
        ),
        "word": TfidfVectorizer(
            analyzer="word", ngram_range=config.word_ngram_range, lowercase=True,
            sublinear_tf=True, min_df=config.min_df, max_features=config.word_max_features,
            token_pattern=r"(?u)\b\w[\w']*\b", dtype=np.float32,
        ),
    }


def fit_vectorizers(vectorizers: dict[str, TfidfVectorizer], normalised: Sequence[str]) -> None:
    """Fit each vectorizer on ``normalised``, keeping its ``max_features`` most frequent
    n-grams with ties broken by the n-gram itself.

    scikit-learn makes the same cut but orders ties with NumPy's unstable ``argsort``,
    whose SIMD kernels differ by CPU: the same data gave vocabularies differing in ~400
    of 50k character n-grams on two machines, and so different model bytes. Choosing the
    vocabulary here keeps it a function of the data alone.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    counter_params = set(CountVectorizer().get_params())
    for vectorizer in vectorizers.values():
        limit = vectorizer.max_features
        if limit is None:
            vectorizer.fit(normalised)
            continue
        params = {k: v for k, v in vectorizer.get_params().items() if k in counter_params}
        counter = CountVectorizer(**{**params, "max_features": None, "dtype": np.int64})
        counts = counter.fit_transform(normalised)
        totals = np.asarray(counts.sum(axis=0)).ravel()
        terms = counter.get_feature_names_out()  # sorted: index order is term order
        kept = np.lexsort((np.arange(len(terms)), -totals))[:limit]
        vocabulary = {str(term): i for i, term in enumerate(sorted(terms[kept]))}
        vectorizer.set_params(vocabulary=vocabulary)
        vectorizer.fit(normalised)
        # The fitted ``vocabulary_`` is what transforms; the parameter would pickle a
        # second copy of it.
        vectorizer.set_params(vocabulary=None)


def strip_for_pickling(vectorizer: TfidfVectorizer) -> None:
    """Drop fitted attributes that make identical trainings pickle to different bytes.

    ``stop_words_`` (terms pruned by min_df/max_features, documented as safe to delete)
    is a Python set, pickled in hash-seed order; ``_stop_words_id`` is a memory address
    scikit-learn caches on every transform. Neither is needed to transform.
    """
    for attribute in ("stop_words_", "_stop_words_id"):
        if hasattr(vectorizer, attribute):
            delattr(vectorizer, attribute)


def transform(vectorizers: dict[str, TfidfVectorizer], normalised: Sequence[str]) -> sp.csr_matrix:
    return sp.hstack([v.transform(normalised) for v in vectorizers.values()]).tocsr()


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), LOGIT_CLIP, 1.0 - LOGIT_CLIP)
    return np.log(p / (1.0 - p))


def profanity_probability(texts: Sequence[str]) -> np.ndarray:
    """alt-profanity-check's probability that each text is profane (its own linear SVM)."""
    if len(texts) == 0:
        return np.zeros(0, dtype=np.float64)
    import warnings

    with warnings.catch_warnings():
        # Its pickles come from an older scikit-learn; the linear model loads correctly.
        warnings.simplefilter("ignore")
        from profanity_check import predict_prob

        return np.asarray(predict_prob(list(texts)), dtype=np.float64)


def words_with_spans(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group(0)) for m in WORD.finditer(text)]
