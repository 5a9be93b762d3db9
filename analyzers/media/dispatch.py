"""One entry point for any uploaded file: sniff the bytes, then the matching analyzer."""

from __future__ import annotations

from analyzers.media.audio import AudioAnalyzer
from analyzers.media.image import ImageAnalyzer
from analyzers.media.limits import MediaLimits
from analyzers.media.names import safe_filename
from analyzers.media.schemas import AudioAnalysis, ImageAnalysis, VideoAnalysis
from analyzers.media.sniff import MediaKind, sniff_media_type
from analyzers.media.video import VideoAnalyzer

MediaAnalysis = ImageAnalysis | AudioAnalysis | VideoAnalysis


class MediaAnalyzer:
    """``MediaAnalyzer().analyze(data, filename=None)``: image, audio or video analysis.

    The analyzers share one ``MediaLimits``; the video analyzer reuses the image and
    audio analyzers (and so their loaded models) for keyframes and the audio track.
    """

    def __init__(
        self,
        image: ImageAnalyzer | None = None,
        audio: AudioAnalyzer | None = None,
        video: VideoAnalyzer | None = None,
        limits: MediaLimits | None = None,
    ) -> None:
        self.limits = limits or MediaLimits()
        self.image = image or ImageAnalyzer(limits=self.limits)
        self.audio = audio or AudioAnalyzer(limits=self.limits)
        self.video = video or VideoAnalyzer(self.image, self.audio, limits=self.limits)

    def analyze(self, data: bytes, filename: str | None = None) -> MediaAnalysis:
        if filename is not None:
            safe_filename(filename)  # refuses traversal; the name is never used as a path
        self.limits.check_file_bytes(len(data))
        kind = sniff_media_type(data).kind
        if kind is MediaKind.IMAGE:
            return self.image.analyze(data)
        if kind is MediaKind.AUDIO:
            return self.audio.analyze(data)
        return self.video.analyze(data)
