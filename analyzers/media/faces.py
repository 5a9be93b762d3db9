"""Faces: count and boxes from OpenCV's Haar cascade, cross-checked with NudeNet's faces.

The frontal-face cascade (``alt2``: faster than ``default`` at similar recall) ships with
opencv (``cv2.data.haarcascades``). It runs on equalised luma at 320 px max side with a
24 px minimum window, so faces smaller than ~7.5 % of the image's long side are not looked
for: the signal is about prominent faces, and the cascade's cost grows fast below that. NudeNet
also detects FACE_FEMALE / FACE_MALE; a face found by both (IoU >= 0.3) is reported once
as ``haar+nudenet``, a face found by one is reported with that source, so the count is
the union and ``agreement`` says how much the two detectors agree.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from analyzers.media.decode import resize_max_side
from analyzers.media.nudity import FACE_LABELS
from analyzers.media.schemas import Box, Detection, Face, FaceReport
from core.contracts import ModelRef
from core.errors import ModelNotAvailable

DETECTION_SIDE = 320
MATCH_IOU = 0.3


class HaarFaceDetector:
    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_alt2.xml",
        scale_factor: float = 1.2,
        min_neighbors: int = 4,
        min_size: int = 24,
    ) -> None:
        import cv2

        path = Path(cv2.data.haarcascades) / cascade  # type: ignore[attr-defined]
        classifier = cv2.CascadeClassifier(str(path))
        if classifier.empty():
            raise ModelNotAvailable(
                f"Haar cascade {path} could not be loaded (opencv-python-headless < 5 ships "
                "it); faces are not assessed",
                model=cascade,
            )
        self.classifier = classifier
        # One cascade is shared by request threads and job workers; OpenCV does not promise
        # detectMultiScale is safe to call concurrently on one object.
        self._lock = threading.Lock()
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.model = ModelRef(
            name=f"opencv.{Path(cascade).stem}", version=cv2.__version__, source=f"path:{path}"
        )

    def detect(self, rgb: np.ndarray, scale: float = 1.0) -> list[Box]:
        """Face boxes on ``rgb``, multiplied by ``scale`` into original coordinates."""
        small = face_input(rgb)
        return face_boxes(self.find(small), rgb.shape[1], small.shape[1], scale)

    def find(self, small: np.ndarray) -> np.ndarray:
        """(faces, 4) x, y, w, h on a ``face_input`` image: the only step that needs the
        cascade (the media model service runs it)."""
        import cv2

        grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        with self._lock:
            found = self.classifier.detectMultiScale(
                grey,
                scaleFactor=self.scale_factor,
                minNeighbors=self.min_neighbors,
                minSize=(self.min_size, self.min_size),
            )
        return np.asarray(found, dtype=np.int64).reshape(-1, 4)


def face_input(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` at the side the cascade reads."""
    return resize_max_side(rgb, DETECTION_SIDE)


def face_boxes(found: np.ndarray, width: int, small_width: int, scale: float = 1.0) -> list[Box]:
    """``find``'s boxes on the ``small_width`` image -> boxes on the ``width`` image
    multiplied by ``scale``."""
    factor = scale * width / small_width
    return [
        Box(x=float(x) * factor, y=float(y) * factor, w=float(w) * factor, h=float(h) * factor)
        for (x, y, w, h) in np.asarray(found).reshape(-1, 4)
    ]


def iou(a: Box, b: Box) -> float:
    left, top = max(a.x, b.x), max(a.y, b.y)
    right, bottom = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(0.0, right - left) * max(0.0, bottom - top)
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


def cross_check(haar_faces: list[Box], nudenet: list[Detection] | None) -> FaceReport:
    """Merge Haar faces with NudeNet's FACE_* detections (``None``: NudeNet did not run)."""
    if nudenet is None:
        haar_only = [Face(box=box, source="haar") for box in haar_faces]
        return FaceReport(
            count=len(haar_only), faces=haar_only, haar_count=len(haar_faces), nudenet_count=None
        )
    nudenet_faces = [d.box for d in nudenet if d.label in FACE_LABELS]
    unmatched = list(range(len(nudenet_faces)))
    faces: list[Face] = []
    both = 0
    for box in haar_faces:
        best = max(unmatched, key=lambda j: iou(box, nudenet_faces[j]), default=None)
        if best is not None and iou(box, nudenet_faces[best]) >= MATCH_IOU:
            unmatched.remove(best)
            faces.append(Face(box=box, source="haar+nudenet"))
            both += 1
        else:
            faces.append(Face(box=box, source="haar"))
    faces.extend(Face(box=nudenet_faces[j], source="nudenet") for j in unmatched)
    return FaceReport(
        count=len(faces),
        faces=faces,
        haar_count=len(haar_faces),
        nudenet_count=len(nudenet_faces),
        agreement=round(both / len(faces), 4) if faces else None,
    )
