"""`deskmark annotate IMAGE...`: mark photos on disk through the same pipeline, no helpdesk.

Writes `<name>-marked.jpg` and `<name>-marked.json` (boxes, who drew each mark, model, cost) for
each photo (never over an existing file without `--force`, never through a symlink; photos
whose names meet get distinct outputs: `a-jpg-marked.jpg`, `a-png-marked.jpg`), with a
progress bar when stderr is a terminal and one line per photo otherwise.
With `--debug`, also `<name>-model.png` (the model's output as it came) and `<name>-strokes.png`
(the strokes deskmark took from it in their own colours, the red it added but was not kept in
translucent magenta, each located box outlined in yellow), and a line per mark deskmark redrew.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from integrations.config import Settings
from integrations.errors import RateLimited, RetryableError, UnsafeURL, UnusablePhoto, VendorError
from integrations.i18n import language_of
from worker.marking import Marked, Marker, make_marker
from worker.notes import agent_reason, what_was_marked
from worker.records import Mark

__all__ = ["run_annotate"]

ATTEMPTS = 3


class Progress:
    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()

    def show(self, done: int, label: str) -> None:
        if not self.tty:
            return
        width = 24
        filled = int(width * done / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"\r[{bar}] {done}/{self.total} {label[:40]:<40}")
        self.stream.flush()

    def line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + " " * 80 + "\r")
        self.stream.write(text + "\n")
        self.stream.flush()


def _mark_with_retries(marker: Marker, data: bytes, progress: Progress, label: str,
                       debug: bool, language: str = "en") -> Marked:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return marker.mark(data, debug=debug, language=language)
        except RetryableError as exc:
            if attempt == ATTEMPTS:
                raise
            wait = exc.retry_after if isinstance(exc, RateLimited) and exc.retry_after else 5.0 * attempt
            progress.line(f"{label}: {exc}; trying again in {wait:.0f} s")
            time.sleep(wait)
    raise AssertionError("unreachable")


def _summary(meta: Mark) -> str:
    marks = meta.get("marks") or []
    if marks:
        return ", ".join(f"{m['label']} by {m['drawn_by']}" for m in marks)
    return what_was_marked(meta)


OUTPUTS = ("marked.jpg", "marked.json", "model.png", "strokes.png")


def plan_outputs(paths: list[str], out_dir: str | None) -> list[tuple[Path, str]]:
    """Each photo's output folder and stem. Photos whose stems meet in one folder (a.jpg and
    a.png, or x/a.jpg and y/a.jpg with -o) get distinct stems: `a-jpg`, `a-png`, `a-jpg-2`."""
    planned: list[tuple[Path, str]] = []
    taken: set[tuple[Path, str]] = set()
    stems: dict[tuple[Path, str], int] = {}
    for name in paths:
        source = Path(name)
        folder = Path(out_dir) if out_dir else source.parent
        key = (folder.resolve(), source.stem.lower())
        stems[key] = stems.get(key, 0) + 1
    for name in paths:
        source = Path(name)
        folder = Path(out_dir) if out_dir else source.parent
        stem = source.stem
        if stems[(folder.resolve(), stem.lower())] > 1:
            stem = f"{stem}-{source.suffix.lstrip('.').lower() or 'file'}"
        candidate, n = stem, 1
        while (folder.resolve(), candidate.lower()) in taken:
            n += 1
            candidate = f"{stem}-{n}"
        taken.add((folder.resolve(), candidate.lower()))
        planned.append((folder, candidate))
    return planned


def write_new(path: Path, data: bytes, force: bool) -> None:
    """Write a file of ours: never through a symlink (O_NOFOLLOW), and never over an existing
    file unless `force` (O_EXCL), so that a photo's name cannot aim the output elsewhere."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    flags |= os.O_TRUNC if force else os.O_EXCL
    if force and path.is_symlink():
        raise FileExistsError(f"{path} is a symbolic link: not written through, even with --force")
    descriptor = os.open(path, flags, 0o644)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)


def run_annotate(paths: list[str], out_dir: str | None, prompt: str | None,
                 settings: Settings, stream: TextIO = sys.stderr, debug: bool = False,
                 force: bool = False) -> int:
    marker = make_marker(settings, guess=True)  # photos on disk: the local guess, said in the record
    if prompt:
        marker.prompt = prompt
    progress = Progress(len(paths), stream)
    failures = 0
    total_cost = 0.0
    for done, (name, (target_dir, stem)) in enumerate(zip(paths, plan_outputs(paths, out_dir),
                                                          strict=True)):
        source = Path(name)
        progress.show(done, source.name)
        outputs = [target_dir / f"{stem}-{suffix}" for suffix in OUTPUTS]
        existing = [str(p) for p in outputs if p.exists() or p.is_symlink()]
        if existing and not force:
            # Before the model is paid: its result could not be written.
            failures += 1
            progress.line(f"skipped {source}: {', '.join(existing)} already exists (--force to "
                          "replace)")
            continue
        try:
            marked = _mark_with_retries(marker, source.read_bytes(), progress, source.name, debug,
                                        language_of(settings.language, None))  # photos on disk: no ticket
        except (OSError, UnusablePhoto, UnsafeURL) as exc:
            failures += 1
            progress.line(f"skipped {source}: {exc}")
            continue
        except VendorError as exc:
            failures += 1
            progress.line(f"failed {source}: {agent_reason(exc)} ({exc})")
            continue
        meta = marked.meta
        image_path, record_path = outputs[0], outputs[1]
        record = {"source": str(source), "marked": str(image_path), **{
            key: meta.get(key) for key in ("provider", "model", "cost_usd", "labels", "regions",
                                           "marks", "unlocated_mark", "marked", "located",
                                           "request_id")}}
        try:
            target_dir.mkdir(parents=True, exist_ok=True)
            write_new(image_path, marked.image, force)
            for part, data in marked.debug.items():
                path = target_dir / f"{stem}-{part}.png"
                write_new(path, data, force)
                record[f"debug_{part}"] = str(path)
            write_new(record_path, (json.dumps(record, indent=2) + "\n").encode(), force)
        except OSError as exc:
            failures += 1
            progress.line(f"not written {source}: {exc}")
            continue
        total_cost += meta.get("cost_usd") or 0.0
        progress.line(f"marked {source} -> {image_path} ({_summary(meta)}; {meta.get('model')}, "
                      f"${meta.get('cost_usd') or 0:.4f})")
        if debug:
            for item in meta.get("marks") or []:
                if item.get("drawn_by") == "deskmark" and meta.get("provider") != "local":
                    progress.line(f"  {item['label']}: deskmark drew the mark, because {item['why']} "
                                  f"(directions covered: {item.get('coverage') or 0:.0%})")
            if not meta.get("marked", True):
                progress.line(f"  not marked: {what_was_marked(meta)}")
            if not marked.debug:
                progress.line("  no model output to show (the local annotator marked it)")
    progress.show(len(paths), "done")
    progress.line(f"{len(paths) - failures} of {len(paths)} marked, total cost ${total_cost:.4f}")
    return 1 if failures else 0
