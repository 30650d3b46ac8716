"""What agents read on the ticket: the note beside a marked photo, and the one for a photo that
could not be marked. Short, honest about what a model did, HTML-escaped."""

from __future__ import annotations

import html
from html.parser import HTMLParser
from typing import Any

from integrations.errors import VendorError
from integrations.models import prices_of
from worker.records import Mark
from worker.signals import checks_line

__all__ = ["note_html", "note_marker", "failure_html", "review_html", "agent_reason", "money", "delivered_name",
           "plain_text",
           "what_was_marked", "AGENT_REASONS"]

# Vendor error codes an agent may read about, in words.
AGENT_REASONS = {
    "moderation_blocked": "OpenAI's safety system refused to edit this photo (moderation_blocked)",
    "insufficient_quota": "the OpenAI account has run out of credit (insufficient_quota)",
    "model_not_found": "the configured model is not available (model_not_found)",
    "invalid_api_key": "deskmark's OpenAI API key was refused (invalid_api_key)",
}


def escape(text: str) -> str:
    """For text between tags (these notes carry no attributes): "the model's", not "&#x27;"."""
    return html.escape(text, quote=False)


def agent_reason(error: VendorError) -> str:
    """A sentence for agents; the raw vendor answer stays in the job record."""
    if error.code in AGENT_REASONS:
        return AGENT_REASONS[error.code]
    if error.status in (401, 403):
        return f"{error.vendor} refused deskmark's credentials ({error.status})"
    if error.status is not None:
        return f"{error.vendor} answered {error.status}{f' ({error.code})' if error.code else ''}"
    return f"{error.vendor} could not be reached"


def money(cost: float | None, model: str | None = None) -> str:
    """The cost line; a model with no price on file was counted at the family's highest."""
    if cost is None:
        return "cost unknown (no price on file for a model used)"
    if model and not prices_of(model)[1]:
        return f"cost at most ${cost:.4f} (no price on file for {model}: counted at the highest)"
    return f"cost ${cost:.4f}"


def delivered_name(filename: str, mark: Mark) -> str:
    """The attachment's name: `<stem>-marked.jpg`, or `-unmarked.jpg` when nothing was marked."""
    stem = filename.rsplit(".", 1)[0] or "photo"
    return f"{stem}-marked.jpg" if mark.get("marked", True) else f"{stem}-unmarked.jpg"


def what_was_marked(mark: Mark) -> str:
    """One line for Slack and logs: the labels, or why there are none."""
    if mark.get("labels"):
        return ", ".join(mark["labels"])
    if mark.get("unlocated_mark"):
        return "the edit model's own mark (nothing located)"
    if mark.get("no_model"):
        return "nothing (no AI model is configured; the photo is not marked)"
    return "nothing (the damage could not be located; the photo is not marked)"


def _not_located(mark: Mark) -> str:
    located = mark.get("located") or {}
    if located.get("problem"):
        return f"locating failed: {escape(located['problem'])}"
    if located:
        return f"{escape(str(located.get('model')))} found no damage to locate"
    return "locating is off (DESKMARK_LOCATE_MODEL is empty)"


def note_html(filename: str, mark: Mark, job_id: str) -> str:
    model = escape(str(mark.get("model") or "none"))
    located = mark.get("located") or {}
    marked = mark.get("marked", True)
    verb = "marked the damage on" if marked else "could not mark the damage on"
    lines = [f"<p><strong>deskmark</strong> {verb} <em>{escape(filename)}</em>.</p>"]
    if mark.get("reused_from"):
        lines.append(
            f"<p>This photo was marked before, in job {escape(str(mark['reused_from']))}: deskmark "
            "reused that result, and no model was called again (cost $0).</p>")
    if mark.get("lost_edits"):
        lost = int(mark["lost_edits"])
        lines.append(
            f"<p>An earlier edit call for this photo was under way when its worker stopped (a "
            f"deploy or a crash); OpenAI may have billed {'it' if lost == 1 else f'those {lost} calls'} "
            f"as well, so this photo may have cost {lost + 1} edits.</p>")
    if mark.get("budget_reached"):
        lines.append(
            f"<p>The daily AI budget (${mark.get('budget_usd') or 0:.2f}, DESKMARK_DAILY_BUDGET_USD) "
            "was reached, so no edit model was called"
            + (": deskmark drew the mark itself around the damage the locate model found.</p>"
               if marked else ".</p>"))
    own_pixels = ("Everywhere else, the damage included, this is the customer's own photo "
                  "(turned upright, possibly downscaled).")
    if mark.get("provider") == "local":
        labels = ", ".join(escape(label) for label in mark.get("labels") or [])
        lines.append(
            f"<p>Marked: the area circled in red (“{labels or 'possible damage'}”). Marked by "
            "deskmark's local annotator: <strong>no AI model was used</strong>; the circle is a "
            "heuristic guess at the damaged area, please check it against the photo.</p>"
        )
    elif mark.get("marks"):
        parts = []
        for item in mark["marks"]:
            label = escape(str(item.get("label") or "damage"))
            if item.get("drawn_by") == "model":
                parts.append(f"{label} (circled in red by {model})")
            else:
                parts.append(f"{label} (circled by deskmark: {escape(str(item.get('why')))})")
        by_model = any(item.get("drawn_by") == "model" for item in mark["marks"])
        taken = (f" Only the ring of {model}'s mark was taken from its output, after deskmark "
                 "checked that it goes around the located damage; deskmark wrote the label." if by_model else "")
        lines.append(
            f"<p>Marked: {'; '.join(parts)}. Located by {escape(str(located.get('model')))}."
            f"{taken} {own_pixels}</p>")
    elif mark.get("no_model"):
        lines.append(
            "<p><strong>This photo is not marked</strong>: no AI model is configured "
            "(OPENAI_API_KEY is unset), so nothing located the damage, and deskmark draws no "
            "circle it cannot place. Please judge the damage on the photo itself.</p>")
    elif mark.get("budget_reached") and not marked:
        lines.append(
            f"<p><strong>This photo is not marked</strong>: {_not_located(mark)}, and deskmark draws "
            "no circle it cannot place. Please judge the damage on the photo itself.</p>")
    elif mark.get("unlocated_mark"):
        lines.append(
            f"<p>The damage could not be located ({_not_located(mark)}). The red mark is {model}'s "
            "own, kept as drawn: deskmark could not check it against a located box, please check "
            f"it against the photo. {own_pixels}</p>")
    else:
        lines.append(
            f"<p><strong>This photo is not marked</strong>: the damage could not be located "
            f"({_not_located(mark)}), and {model} drew no usable mark, so deskmark drew none. "
            "Please judge the damage on the photo itself.</p>")
    if "signals" in mark:
        lines.append(f"<p>{escape(checks_line(mark['signals']))}</p>")
    if mark.get("credentials"):
        lines.append(_credentials_line(mark))
    cost = money(mark.get("cost_usd"), mark.get("model") if mark.get("provider") == "openai" else None)
    if located and mark.get("cost_usd") is not None and located.get("cost_usd") is not None:
        cost += f" (locate ${located['cost_usd']:.4f}, edit ${mark.get('edit_cost_usd') or 0:.4f})"
    if mark.get("batch"):
        cost += " (edited through OpenAI's Batch API, at half the price)"
    details = [f"Model: {model}", cost, note_marker(job_id)]
    if mark.get("request_id"):
        details.append(f"request {escape(str(mark['request_id']))}")
    lines.append("<p>" + " · ".join(details) + "</p>")
    return "\n".join(lines)


def _credentials_line(mark: Mark) -> str:
    found = mark["credentials"]
    if found.get("error"):
        return (f"<p>Content credentials: <strong>not added</strong> ({escape(found['error'])}); "
                "the photo is marked all the same.</p>")
    if found.get("signer") == "configured":
        return ("<p>Content credentials (C2PA) inside the photo name the original's hash, the "
                "model, the marked region and this job; <code>deskmark verify</code> reads them.</p>")
    return ("<p>Content credentials (C2PA) inside the photo name the original's hash, the model, "
            "the marked region and this job. They are signed by this deployment's own throwaway "
            "certificate (no DESKMARK_C2PA_CERT), so they are unverifiable outside deskmark: "
            "<code>deskmark verify</code> checks they are intact.</p>")


def note_marker(job_id: str) -> str:
    """What only the note with the marked photo says: before posting it again after an unclear
    failure, the ticket is searched for it (the failure note names the job too, differently)."""
    return f"marked photo of job {job_id}"


def failure_html(filename: str, reason: str, job_id: str) -> str:
    return (f"<p><strong>deskmark</strong> could not mark the photo <em>{escape(filename)}</em>: "
            f"{escape(reason).rstrip('.')}. Please review it by hand.</p><p>job {job_id}</p>")


def review_html(decision: dict[str, Any], filename: str, marker: str) -> str:
    verdict = "approved" if decision["decision"] == "approved" else "rejected"
    who = f"{escape(decision.get('user_name') or 'a reviewer')} (Slack {escape(decision['user_id'])})"
    return (f"<p><strong>Warranty claim {verdict}</strong> by {who} on {escape(decision['at'])}, "
            f"for the photo <em>{escape(filename)}</em>.</p><p>{escape(marker)}</p>")


class _Text(HTMLParser):
    BREAKS = {"p", "br", "li", "div", "tr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BREAKS and self.parts:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def plain_text(html_body: str) -> str:
    """A note as plain text: its words, a line per paragraph."""
    parser = _Text()
    parser.feed(html_body)
    parser.close()
    return "\n".join(" ".join(line.split()) for line in "".join(parser.parts).splitlines()).strip()
