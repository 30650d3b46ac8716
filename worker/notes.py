"""What agents read on the ticket: the note beside a marked photo, and the one for a photo that
could not be marked. Short, honest about what a model did, HTML-escaped."""

from __future__ import annotations

import html
from collections.abc import Iterable
from html.parser import HTMLParser
from typing import Any

from integrations.errors import VendorError
from integrations.i18n import ENGLISH, N_, Words
from integrations.models import prices_of
from worker.records import Mark
from worker.signals import checks_line

__all__ = ["note_html", "note_marker", "failure_html", "review_html", "agent_reason", "money", "delivered_name",
           "plain_text",
           "what_was_marked", "AGENT_REASONS"]

# Vendor error codes an agent may read about, in words.
AGENT_REASONS = {
    "moderation_blocked": N_("OpenAI's safety system refused to edit this photo (moderation_blocked)"),
    "insufficient_quota": N_("the OpenAI account has run out of credit (insufficient_quota)"),
    "model_not_found": N_("the configured model is not available (model_not_found)"),
    "invalid_api_key": N_("deskmark's OpenAI API key was refused (invalid_api_key)"),
}


def escape(text: str) -> str:
    """For text between tags (these notes carry no attributes): "the model's", not "&#x27;"."""
    return html.escape(text, quote=False)


def agent_reason(error: VendorError, w: Words = ENGLISH) -> str:
    """A sentence for agents; the raw vendor answer stays in the job record."""
    if error.code in AGENT_REASONS:
        return w._(AGENT_REASONS[error.code])
    if error.status in (401, 403):
        return w._("{vendor} refused deskmark's credentials ({status})", vendor=error.vendor, status=error.status)
    if error.status is not None:
        return w._("{vendor} answered {status}", vendor=error.vendor,
                   status=f"{error.status}{f' ({error.code})' if error.code else ''}")
    return w._("{vendor} could not be reached", vendor=error.vendor)


def money(cost: float | None, model: str | None = None, w: Words = ENGLISH) -> str:
    """The cost line; a model with no price on file was counted at the family's highest."""
    if cost is None:
        return w._("cost unknown (no price on file for a model used)")
    if model and not prices_of(model)[1]:
        return w._("cost at most {cost} (no price on file for {model}: counted at the highest)",
                   cost=w.money(cost), model=model)
    return w._("cost {cost}", cost=w.money(cost))


def delivered_name(filename: str, mark: Mark) -> str:
    """The attachment's name: `<stem>-marked.jpg`, or `-unmarked.jpg` when nothing was marked."""
    stem = filename.rsplit(".", 1)[0] or "photo"
    return f"{stem}-marked.jpg" if mark.get("marked", True) else f"{stem}-unmarked.jpg"


def what_was_marked(mark: Mark, w: Words = ENGLISH) -> str:
    """One line for Slack and logs: the labels, or why there are none."""
    if mark.get("labels"):
        return ", ".join(mark["labels"])
    if mark.get("unlocated_mark"):
        return w._("the edit model's own mark (nothing located)")
    if mark.get("no_model"):
        return w._("nothing (no AI model is configured; the photo is not marked)")
    return w._("nothing (the damage could not be located; the photo is not marked)")


def _not_located(mark: Mark, w: Words) -> str:
    located = mark.get("located") or {}
    if located.get("problem"):
        return w._("locating failed: {problem}", problem=escape(w._(located["problem"])))
    if located:
        return w._("{model} found no damage to locate", model=escape(str(located.get("model"))))
    return w._("locating is off (DESKMARK_LOCATE_MODEL is empty)")


def note_html(filename: str, mark: Mark, job_id: str, w: Words = ENGLISH) -> str:
    """The note beside the delivered photo, in `w`'s language."""
    model = escape(str(mark.get("model") or w._("none")))
    located = mark.get("located") or {}
    marked = mark.get("marked", True)
    name = escape(filename)
    lines = [w._("<p><strong>deskmark</strong> marked the damage on <em>{filename}</em>.</p>", filename=name)
             if marked else
             w._("<p><strong>deskmark</strong> could not mark the damage on <em>{filename}</em>.</p>",
                 filename=name)]
    if mark.get("reused_from"):
        lines.append(w._("<p>This photo was marked before, in job {job}: deskmark reused that result, "
                         "and no model was called again (cost {cost}).</p>",
                         job=escape(str(mark["reused_from"])), cost=w.money(0, 0)))
    if mark.get("lost_edits"):
        lost = int(mark["lost_edits"])
        lines.append(w.n_("<p>An earlier edit call for this photo was under way when its worker stopped (a "
                          "deploy or a crash); OpenAI may have billed it as well, so this photo may have "
                          "cost {edits} edits.</p>",
                          "<p>{count} earlier edit calls for this photo were under way when their workers "
                          "stopped (a deploy or a crash); OpenAI may have billed them as well, so this photo "
                          "may have cost {edits} edits.</p>", lost, edits=w.number(lost + 1)))
    if mark.get("budget_reached"):
        budget = w.money(float(mark.get("budget_usd") or 0), 2)
        lines.append(w._("<p>The daily AI budget ({budget}, DESKMARK_DAILY_BUDGET_USD) was reached, so no "
                         "edit model was called: deskmark drew the mark itself around the damage the "
                         "locate model found.</p>", budget=budget) if marked else
                     w._("<p>The daily AI budget ({budget}, DESKMARK_DAILY_BUDGET_USD) was reached, so no "
                         "edit model was called.</p>", budget=budget))
    own_pixels = w._("Everywhere else, the damage included, this is the customer's own photo (turned "
                     "upright, possibly downscaled).")
    if mark.get("provider") == "local":
        labels = ", ".join(escape(label) for label in mark.get("labels") or [])
        lines.append(w._("<p>Marked: the area circled in red (“{labels}”). Marked by deskmark's local "
                         "annotator: <strong>no AI model was used</strong>; the circle is a heuristic guess "
                         "at the damaged area, please check it against the photo.</p>",
                         labels=labels or w._("possible damage")))
    elif mark.get("marks"):
        parts = []
        for item in mark["marks"]:
            label = escape(str(item.get("label") or w._("damage")))
            if item.get("drawn_by") == "model":
                parts.append(w._("{label} (circled in red by {model})", label=label, model=model))
            else:
                parts.append(w._("{label} (circled by deskmark: {why})", label=label,
                                 why=escape(w._(str(item.get("why"))))))
        by_model = any(item.get("drawn_by") == "model" for item in mark["marks"])
        lines.append("<p>" + sentences(filter(None, [
            w._("Marked: {marks}.", marks=w._("; ").join(parts)),
            w._("Located by {model}.", model=escape(str(located.get("model")))),
            w._("Only the ring of {model}'s mark was taken from its output, after deskmark checked that "
                "it goes around the located damage; deskmark wrote the label.", model=model) if by_model else "",
            own_pixels])) + "</p>")
    elif mark.get("no_model"):
        lines.append(w._("<p><strong>This photo is not marked</strong>: no AI model is configured "
                         "(OPENAI_API_KEY is unset), so nothing located the damage, and deskmark draws no "
                         "circle it cannot place. Please judge the damage on the photo itself.</p>"))
    elif mark.get("budget_reached") and not marked:
        lines.append(w._("<p><strong>This photo is not marked</strong>: {why}, and deskmark draws no circle "
                         "it cannot place. Please judge the damage on the photo itself.</p>",
                         why=_not_located(mark, w)))
    elif mark.get("unlocated_mark"):
        lines.append("<p>" + sentences([
            w._("The damage could not be located ({why}). The red mark is {model}'s own, kept as drawn: deskmark "
                "could not check it against a located box, please check it against the photo.",
                why=_not_located(mark, w), model=model), own_pixels]) + "</p>")
    else:
        lines.append(w._("<p><strong>This photo is not marked</strong>: the damage could not be located "
                         "({why}), and {model} drew no usable mark, so deskmark drew none. Please judge the "
                         "damage on the photo itself.</p>", why=_not_located(mark, w), model=model))
    if "signals" in mark:
        lines.append(f"<p>{escape(checks_line(mark['signals'], w=w))}</p>")
    if mark.get("credentials"):
        lines.append(_credentials_line(mark, w))
    cost = money(mark.get("cost_usd"), mark.get("model") if mark.get("provider") == "openai" else None, w)
    if located and mark.get("cost_usd") is not None and located.get("cost_usd") is not None:
        cost += " " + w._("(locate {locate}, edit {edit})", locate=w.money(located["cost_usd"]),
                          edit=w.money(mark.get("edit_cost_usd") or 0))
    if mark.get("batch"):
        cost += " " + w._("(edited through OpenAI's Batch API, at half the price)")
    details = [w._("Model: {model}", model=model), cost, note_marker(job_id, w)]
    if mark.get("request_id"):
        details.append(w._("request {id}", id=escape(str(mark["request_id"]))))
    lines.append("<p>" + " · ".join(details) + "</p>")
    return "\n".join(lines)


def sentences(parts: Iterable[str]) -> str:
    """Sentences one after another: a space between them, none after a full stop that needs
    none (Chinese and Japanese "。")."""
    out = ""
    for part in parts:
        out += part if not out or out.endswith("。") else " " + part
    return out


def _credentials_line(mark: Mark, w: Words) -> str:
    found = mark["credentials"]
    if found.get("error"):
        return w._("<p>Content credentials: <strong>not added</strong> ({error}); the photo is marked all "
                   "the same.</p>", error=escape(found["error"]))
    if found.get("signer") == "configured":
        return w._("<p>Content credentials (C2PA) inside the photo name the original's hash, the model, the "
                   "marked region and this job; <code>deskmark verify</code> reads them.</p>")
    return w._("<p>Content credentials (C2PA) inside the photo name the original's hash, the model, the "
               "marked region and this job. They are signed by this deployment's own throwaway certificate "
               "(no DESKMARK_C2PA_CERT), so they are unverifiable outside deskmark: <code>deskmark "
               "verify</code> checks they are intact.</p>")


def note_marker(job_id: str, w: Words = ENGLISH) -> str:
    """What only the note with the marked photo says: before posting it again after an unclear
    failure, the ticket is searched for it (the failure note names the job too, differently).
    A job keeps its language (its record's), so its marker is the same on every attempt."""
    return w._("marked photo of job {job}", job=job_id)


def failure_html(filename: str, reason: str, job_id: str, w: Words = ENGLISH) -> str:
    return w._("<p><strong>deskmark</strong> could not mark the photo <em>{filename}</em>: {reason}. "
               "Please review it by hand.</p>", filename=escape(filename),
               reason=escape(reason).rstrip(".")) + f"<p>{w._('job {job}', job=job_id)}</p>"


def review_html(decision: dict[str, Any], filename: str, marker: str, w: Words = ENGLISH) -> str:
    who = w._("{name} (Slack {id})", name=escape(decision.get("user_name") or w._("a reviewer")),
              id=escape(decision["user_id"]))
    when = w.datetime(float(decision["at_ts"])) if decision.get("at_ts") else escape(decision["at"])
    text = (w._("<p><strong>Warranty claim approved</strong> by {who} on {when}, for the photo "
                "<em>{filename}</em>.</p>", who=who, when=when, filename=escape(filename))
            if decision["decision"] == "approved" else
            w._("<p><strong>Warranty claim rejected</strong> by {who} on {when}, for the photo "
                "<em>{filename}</em>.</p>", who=who, when=when, filename=escape(filename)))
    return text + f"<p>{escape(marker)}</p>"


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
