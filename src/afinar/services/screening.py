"""The data screen of the job pipeline: moderate every example of a job's files before training.

Server configuration (``AFINAR_SAFETY_SCREEN`` and the moderation thresholds); no job parameter
can lower it. The file report runs the same screen as a pre-check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from afinar.config import Settings
    from afinar.safety.moderation import ModerationEngine
    from afinar.safety.screen import ScreenReport
    from afinar.services.files import FilesService
    from afinar.store.tables import Job


class FileScreening:
    """Moderates files with the operator's thresholds; ``moderation`` gives the engine (built lazily)."""

    def __init__(
        self, *, files: FilesService, moderation: Callable[[], ModerationEngine], settings: Settings
    ) -> None:
        self.files = files
        self.moderation = moderation
        self.settings = settings

    def screen_file(self, org_id: str, file_id: str) -> ScreenReport | None:
        """Moderate every example of one file; None when screening is off."""
        if not self.settings.safety_screen:
            return None
        from afinar.safety.screen import screen_lines

        with self.files.open(org_id, file_id) as lines:  # decrypted as read, nothing written to disk
            return screen_lines(
                lines,
                self.moderation(),
                threshold_fraction=self.settings.moderation_screen_max_flagged_fraction,
                max_flagged_examples=self.settings.moderation_screen_max_flagged_examples,
            )

    def screen_job_files(self, job: Job) -> dict[str, Any] | None:
        """Moderate every example of the job's files; the job error when too many are flagged."""
        for param, fid in (("training_file", job.training_file), ("validation_file", job.validation_file)):
            report = self.screen_file(job.org_id, fid) if fid is not None else None
            error = report.error(param) if report is not None else None
            if error is not None:
                return {"code": error.code, "message": error.message, "param": param}
        return None
