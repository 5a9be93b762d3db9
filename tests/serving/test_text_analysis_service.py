"""The text models served apart from the API: what the API worker gets through the
text-analysis service is the analysis the in-process path computes, and the worker loads
no text model to get it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from analyzers.text import document_text
from core.errors import ServiceUnavailable
from ingest.analysis import (
    InProcessTextAnalysis,
    RemoteAnalysisFailed,
    analyze_wire_documents,
    wire_documents,
)
from serving.model_clients import TextAnalysisClient
from tests.conftest import REPO

ITEMS = [
    ("Derby day", "Arsenal beat Chelsea 2-1 in London on Saturday. #PremierLeague @arsenal"),
    ("", "Bake the sourdough at 230 degrees for forty minutes, then let it cool on a rack."),
    ("Election night", "Voters in Ohio and Texas queued for hours; results are expected by "
     "Tuesday morning according to the Associated Press."),
    ("CLICK NOW!!! you won't believe this", "Free money, guaranteed. Send your bank details."),
    ("Tiny", "ok"),
]


class WireService:
    """The TextAnalysis service's own ``analyze`` over models loaded here, called as a
    BentoML client calls it: JSON in, JSON out."""

    def __init__(self, text: InProcessTextAnalysis) -> None:
        from serving.service import TextAnalysis

        self.service = TextAnalysis.inner.__new__(TextAnalysis.inner)  # type: ignore[attr-defined]
        self.service.text = text
        self.text = text
        self.calls: list[int] = []

    def analyze(self, documents: list[dict[str, str]]) -> list[dict[str, Any]]:
        self.calls.append(len(documents))
        answer = self.service.analyze(json.loads(json.dumps(documents)))
        return json.loads(json.dumps(answer))  # type: ignore[no-any-return]

    def analyze_transcript(self, text: str) -> dict[str, Any]:
        self.calls.append(0)  # 0: a transcript, not a batch of documents
        answer = self.service.analyze_transcript(json.loads(json.dumps(text)))
        return json.loads(json.dumps(answer))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):  # type: ignore[no-untyped-def]
    from serving.settings import Settings
    from serving.wiring import build_fuser, build_text_embedder, build_text_models

    settings = Settings(data_dir=tmp_path_factory.mktemp("text-service") / "var",
                        model_cache_dir=REPO / "var" / "test-cache")
    embedder, reason = build_text_embedder(settings)
    assert embedder is not None, reason
    models = build_text_models(settings, embedder, reason)
    fuser = build_fuser(embedder.model.id, "reelsift.visual.opencv_descriptor.v1@1")
    in_process = InProcessTextAnalysis(models.analyzer, models.stages(fuser))
    # What serving.service.TextAnalysis holds: the same models, no fuser.
    service = WireService(InProcessTextAnalysis(models.analyzer, models.stages(None)))
    return in_process, service, fuser


def analyze(text: Any) -> tuple[list[Any], list[Any]]:
    return text.analyze_documents(  # type: ignore[no-any-return]
        [t for t, _ in ITEMS], [document_text(t, b) for t, b in ITEMS],
        bodies=[b for _, b in ITEMS])


def test_the_service_path_gives_the_in_process_analysis(paths):
    in_process, service, fuser = paths
    expected, expected_vectors = analyze(in_process)
    got, got_vectors = analyze(TextAnalysisClient(service, fuser))

    assert service.calls == [len(ITEMS)]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.model_dump(mode="json") == theirs.model_dump(mode="json")
    assert all(theirs["fused"][0] == fuser.model.id for theirs in expected_vectors)
    for mine, theirs in zip(got_vectors, expected_vectors, strict=True):
        assert mine.keys() == theirs.keys() == {"text", "fused"}
        for kind in mine:
            assert mine[kind][0] == theirs[kind][0]
            np.testing.assert_array_equal(mine[kind][1], theirs[kind][1])
    # The analysis is a real one: entities, labels and risk scores were computed.
    derby = expected[0]
    assert derby.text is not None and {e.text for e in derby.text.entities} >= {"Arsenal"}
    assert derby.labels and any(r.score is not None for r in derby.risk)


def test_chunks_and_transcripts_through_the_service(paths):
    in_process, service, fuser = paths
    client = TextAnalysisClient(service, fuser, chunk=2)
    service.calls.clear()
    got, _ = analyze(client)
    expected, _ = analyze(in_process)

    assert service.calls == [2, 2, 1]  # no chunk larger than a batch
    for mine, theirs in zip(got, expected, strict=True):
        # Other batches pad differently: the encoder's floats may move in the last bits.
        assert mine.text.entities == theirs.text.entities
        assert [k.text for k in mine.text.keywords] == [k.text for k in theirs.text.keywords]
        assert [lb.id for lb in mine.labels] == [lb.id for lb in theirs.labels]
        assert mine.models == theirs.models
        for a, b in zip(mine.risk, theirs.risk, strict=True):
            assert a.category == b.category
            assert a.score == pytest.approx(b.score, abs=1e-4)
    spoken = "The mayor of Lisbon opened the new bridge on Monday."
    service.calls.clear()
    assert client.analyze_transcript(spoken) == in_process.analyze_transcript(spoken)
    assert service.calls == [0]  # the transcript endpoint: no document analysis


class FailsOnBoom:
    """The service's models, failing as an analyzer may on one document's content."""

    def __init__(self, inner: InProcessTextAnalysis) -> None:
        self.inner = inner

    def analyze_documents(self, titles: Any, documents: Any, bodies: Any = None) -> Any:
        if any("BOOM" in d for d in documents):
            raise ValueError("the analyzer failed on this document")
        return self.inner.analyze_documents(titles, documents, bodies)

    def analyze_transcript(self, text: str) -> Any:
        return self.inner.analyze_transcript(text)


def test_a_document_the_service_fails_on_fails_no_other_document_of_its_batch(paths):
    _, service, fuser = paths
    merged = wire_documents(["a", "b", "c"], ["a\nfine one", "b\nBOOM here", "c\nfine two"],
                            ["fine one", "BOOM here", "fine two"])
    answer = analyze_wire_documents(FailsOnBoom(service.text), merged)

    assert [set(entry) for entry in answer] == [
        {"analysis", "vectors"}, {"error"}, {"analysis", "vectors"}]
    assert answer[1]["error"] == "ValueError: the analyzer failed on this document"
    alone = analyze_wire_documents(service.text, [merged[0]])
    assert answer[0]["analysis"] == alone[0]["analysis"]

    class Merged:  # the BentoML client, answering as the service does
        def analyze(self, documents: list[dict[str, str]]) -> Any:
            return analyze_wire_documents(FailsOnBoom(service.text), documents)

    with pytest.raises(RemoteAnalysisFailed, match="failed on this document"):
        TextAnalysisClient(Merged(), fuser).analyze_documents(
            ["b"], ["b\nBOOM here"], ["BOOM here"])


def test_a_service_that_stays_away_is_service_unavailable(paths):
    import aiohttp

    _, _, fuser = paths

    class Away:
        def analyze(self, documents: list[dict[str, str]]) -> Any:
            raise aiohttp.ClientConnectionError("connection refused")

    client = TextAnalysisClient(Away(), fuser)
    with pytest.raises(ServiceUnavailable) as raised:
        client.analyze_documents(["t"], ["t\nbody"], ["body"])
    assert raised.value.details["service"] == "text-analysis"


def test_the_api_worker_imports_no_text_model():
    heavy = ["torch", "transformers", "sentence_transformers", "spacy", "thinc", "sklearn",
             "onnxruntime", "cv2", "nudenet", "librosa", "av", "pandas", "pyarrow"]
    probe = (
        "import sys, json\nimport serving.service\n"
        f"print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))"
    )
    run = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
