"""Language identification with py3langid (its model ships inside the wheel)."""

from __future__ import annotations

from collections.abc import Sequence

from core.contracts import Language

# The model knows 97 languages, several of them rare look-alikes (Latin, Nigerian Pidgin,
# Volapük) that win on short social posts; limiting it to widely used languages doubles
# the confidence on short English text and removes those false winners. Configurable.
COMMON_LANGUAGES: tuple[str, ...] = (
    "af", "ar", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "et", "eu", "fa", "fi",
    "fr", "gl", "gu", "he", "hi", "hr", "hu", "id", "it", "ja", "kn", "ko", "lt", "lv", "ml",
    "mr", "ms", "nl", "no", "pa", "pl", "pt", "ro", "ru", "sk", "sl", "sr", "sv", "sw", "ta",
    "te", "th", "tl", "tr", "uk", "ur", "vi", "zh",
)


class LanguageIdentifier:
    MIN_LETTERS = 3

    def __init__(self, languages: Sequence[str] | None = COMMON_LANGUAGES) -> None:
        from py3langid.langid import MODEL_FILE
        from py3langid.langid import LanguageIdentifier as _Identifier

        self._identifier = _Identifier.from_model_file(MODEL_FILE, norm_probs=True)
        if languages:
            self._identifier.set_languages(list(languages))

    def identify(self, text: str) -> Language | None:
        """The most likely ISO 639-1 code, or None when there are too few letters to say."""
        if sum(ch.isalpha() for ch in text) < self.MIN_LETTERS:
            return None
        code, probability = self._identifier.classify(text)
        return Language(code=code, confidence=round(float(probability), 4))
