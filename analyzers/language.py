"""Language identification with py3langid (its model ships inside the wheel)."""

from __future__ import annotations

from core.contracts import Language


class LanguageIdentifier:
    MIN_LETTERS = 3

    def __init__(self) -> None:
        from py3langid.langid import MODEL_FILE
        from py3langid.langid import LanguageIdentifier as _Identifier

        self._identifier = _Identifier.from_model_file(MODEL_FILE, norm_probs=True)

    def identify(self, text: str) -> Language | None:
        """The most likely ISO 639-1 code, or None when there are too few letters to say."""
        if sum(ch.isalpha() for ch in text) < self.MIN_LETTERS:
            return None
        code, probability = self._identifier.classify(text)
        return Language(code=code, confidence=round(float(probability), 4))
