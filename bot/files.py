"""Files a command answers with (a chart, a CSV), for the adapters to upload or save."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResultFile:
    """One file shown with a command's answer: an image inline where the platform can."""

    name: str
    content_type: str  # "image/png", "text/csv", "image/svg+xml", "application/json"
    data: bytes

    @property
    def is_image(self) -> bool:
        return self.content_type in ("image/png", "image/jpeg")
