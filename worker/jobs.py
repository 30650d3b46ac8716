"""A photo job as it travels on the queue: which photo of which ticket, under which job id.

Made in one place each way: `Job.for_photo` when an event is expanded, `Job.from_record` when a
job is queued again from its record (a replay, the reaper); `to_dict`/`from_dict` for Celery's
JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integrations.events import SourcePhoto, job_id_for
from worker.records import JobRecord

__all__ = ["Job"]


@dataclass(frozen=True)
class Job:
    job_id: str
    vendor: str
    ticket_id: str
    photo: SourcePhoto

    @classmethod
    def for_photo(cls, vendor: str, ticket_id: str, photo: SourcePhoto) -> Job:
        return cls(job_id_for(vendor, ticket_id, photo.attachment_id), vendor, ticket_id, photo)

    @classmethod
    def from_record(cls, job_id: str, record: JobRecord) -> Job:
        return cls(job_id, str(record["vendor"]), str(record["ticket_id"]),
                   SourcePhoto.from_dict(record["photo"]))

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "vendor": self.vendor, "ticket_id": self.ticket_id,
                "photo": self.photo.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        return cls(str(data["job_id"]), str(data["vendor"]), str(data["ticket_id"]),
                   SourcePhoto.from_dict(data["photo"]))
