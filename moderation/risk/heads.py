"""Which trained head scores which risk category (the label mapping, in one place).

The datasets give four binary heads; the contract has nine categories:

=============  =====================================================================
category       source
=============  =====================================================================
hate           head ``hate``: tweets labelled *hate* vs *offensive* + *neither*
               (Davidson et al. 2017).
profanity      head ``abusive``: *hate* or *offensive* vs *neither*. Davidson's
               "offensive language" class is overwhelmingly profane/vulgar wording,
               so the abusive-language probability is the profanity score.
harassment     head ``abusive`` as well. The tweets' abusive class is mostly insults
               aimed at a person ("bitch", "hoe", slurs at someone), but no label
               separates targeted harassment from general vulgarity, so harassment
               and profanity share one calibrated probability. The harassment
               blocklist adds phrases the tweets lack ("kill yourself").
spam           head ``spam``: SMS *spam* vs *ham*.
clickbait      head ``clickbait``: headlines *clickbait* vs *not_clickbait*.
sexual,        no text model. Blocklists only: a match scores the term's configured
violence,      severity; no match leaves the category not assessed (``score=None``)
self_harm,     because a term list cannot clear a text.
low_quality
=============  =====================================================================

Every category may also have blocklists; where a model scores the category the final
score is ``max(model probability, severity of matched terms)``.
"""

from __future__ import annotations

from core.contracts import RiskCategory

CATEGORY_HEADS: dict[RiskCategory, str] = {
    RiskCategory.HATE: "hate",
    RiskCategory.HARASSMENT: "abusive",
    RiskCategory.PROFANITY: "abusive",
    RiskCategory.SPAM: "spam",
    RiskCategory.CLICKBAIT: "clickbait",
}

BLOCKLIST_ONLY: frozenset[RiskCategory] = frozenset(
    c for c in RiskCategory if c not in CATEGORY_HEADS
)
