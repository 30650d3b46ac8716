"""The local annotator: marks a photo with Pillow alone, no model and no account needed.

It cannot see damage; it circles the busiest patch of fine edges and says so in the note.
"""

from __future__ import annotations

from integrations.openai_images import EditResult
from worker import images

__all__ = ["LocalAnnotator", "LOCAL_MODEL"]

LOCAL_MODEL = "deskmark local annotator"


class LocalAnnotator:
    provider = "local"
    model = LOCAL_MODEL

    def mark(self, prepared: images.Prepared, label: str = "possible damage", language: str = "en") -> EditResult:
        box = images.guess_damage_region(prepared.photo)
        marked = prepared.photo.copy()
        images.draw_marks(marked, [(box, label)], language)
        return EditResult(
            image=images.encode_jpeg(marked),
            provider=self.provider,
            model=self.model,
            cost_usd=0.0,
            region=box,
            label=label,
        )
