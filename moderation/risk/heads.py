"""Which trained head scores which risk category, and how a head turns features into a
probability (the label mapping in one place; ``datasets.py`` has the training rules).

=============  =====================================================================
category       head
=============  =====================================================================
profanity      ``profanity``: offensive language, targeted or not (Davidson
               *offensive* + *hate*, OLID *OFF*).
harassment     ``harassment``: an insult or threat aimed at a person (OLID *TIN+IND*,
               Davidson offensive tweets addressed at someone). The harassment
               blocklist adds phrases the tweets lack ("kill yourself").
hate           ``hate``: aimed at a group for who they are (Davidson *hate*, OLID
               *TIN+GRP*).
spam           ``spam``: SMS and YouTube comment *spam*.
clickbait      ``clickbait``: headlines; scored on titles only.
sexual,        no text model. Blocklists only: a match scores the term's configured
violence,      severity; no match leaves the category not assessed (``score=None``)
self_harm,     because a term list cannot clear a text.
low_quality
=============  =====================================================================

Hate, profanity and spam may also have a head over the encoder's word-piece states
(``token_heads.py``); where the caller passes those states, the head's probability is the
stack calibrator's over both heads, otherwise the n-gram calibrator's.

Every category may also have blocklists; where a model scores the category the final
score is ``max(model probability, severity of matched terms)``.

A model may cap one head's probability by another's (``CAPPED_BY``, stored in the
bundle): harassment by profanity, because by both sources' labels an insult aimed at a
person is offensive language (OLID *TIN+IND* lies inside *OFF*; Davidson's addressed
tweets are *offensive* or *hate*), so a text cannot be likelier harassment than
offensive. The two heads are calibrated apart and broke that on tweets the profanity head
calls clean; on a validation split of the *fit* rows the cap raised harassment's own AUC
(Davidson +0.003-0.006, OLID +0.026-0.038) and the abusive figure, and flagged fewer clean
texts (DATA_SOURCES.md). Hate is not capped: it made no difference, and a dehumanising
statement without offensive words is still hate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from core.contracts import RiskCategory
from moderation.risk.features import logit

CATEGORY_HEADS: dict[RiskCategory, str] = {
    RiskCategory.HATE: "hate",
    RiskCategory.HARASSMENT: "harassment",
    RiskCategory.PROFANITY: "profanity",
    RiskCategory.SPAM: "spam",
    RiskCategory.CLICKBAIT: "clickbait",
}

BLOCKLIST_ONLY: frozenset[RiskCategory] = frozenset(
    c for c in RiskCategory if c not in CATEGORY_HEADS
)


# head -> the head whose probability caps it (see the module docstring).
CAPPED_BY: dict[str, str] = {"harassment": "profanity"}


def apply_caps(
    probabilities: Mapping[str, np.ndarray], capped_by: Mapping[str, str]
) -> dict[str, np.ndarray]:
    """Each capped head's probability, at most its capping head's (where both are given)."""
    out = dict(probabilities)
    for head, cap in capped_by.items():
        if head in out and cap in out:
            out[head] = np.minimum(out[head], out[cap])
    return out


def head_inputs(ngram_logit: np.ndarray, profanity_logit: np.ndarray | None) -> np.ndarray:
    """The calibrator's inputs: the n-gram logit, plus alt-profanity-check's for abuse."""
    columns = [ngram_logit] if profanity_logit is None else [ngram_logit, profanity_logit]
    return np.column_stack(columns)


def stack_inputs(ngram_probability: np.ndarray, token_logit: np.ndarray) -> np.ndarray:
    """The stack calibrator's inputs: the n-gram head's calibrated probability and the
    token-state head's output, both as logits clipped alike (``features.logit``)."""
    return np.column_stack([logit(ngram_probability), logit(expit(token_logit))])


def head_probability(
    parts: dict[str, Any], features: sp.csr_matrix, profanity_logit: np.ndarray | None,
    token_logit: np.ndarray | None = None,
) -> np.ndarray:
    """A head's calibrated probability from the shared n-gram features; where the head
    has a token-state part and ``token_logit`` (its output) is given, the stack
    calibrator's."""
    ngram_logit = parts["ngram"].decision_function(features)
    inputs = head_inputs(ngram_logit, profanity_logit if parts["uses_profanity_check"] else None)
    probability = np.asarray(parts["calibrator"].predict_proba(inputs)[:, 1])
    if token_logit is None or "stack_calibrator" not in parts:
        return probability
    return np.asarray(
        parts["stack_calibrator"].predict_proba(stack_inputs(probability, token_logit))[:, 1]
    )


def word_weights(parts: dict[str, Any]) -> np.ndarray:
    """Each n-gram feature's push on the head's calibrated logit: the n-gram model's
    coefficients times the calibrator's weight on that model's logit."""
    scale = float(np.asarray(parts["calibrator"].coef_).ravel()[0])
    return scale * np.asarray(parts["ngram"].coef_).ravel()
