"""Notes, labels and Slack texts in the team's language (DESKMARK_LANGUAGE), or each ticket's
own (auto), through real workers against the loopback Zendesk, OpenAI and Slack."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageChops

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.slack import SandboxSlack
from deskmark.sandbox.zendesk import SandboxZendesk
from tests.helpers import Stack, marked_notes, send_photo, settle, wait_for
from worker import credentials

JAPANESE_LABEL = "画面割れ"


def test_a_japanese_team_gets_a_japanese_note_label_and_review(
    make_stack: Callable[..., Stack], zendesk: SandboxZendesk, openai_fake: SandboxOpenAI, slack: SandboxSlack,
    tmp_path: Path,
) -> None:
    stack = make_stack(DESKMARK_LANGUAGE="ja")
    subject = f"画面が割れて届きました {uuid.uuid4().hex[:6]}"
    ticket, job = send_photo(zendesk, stack.web.url, subject, seed=95, size=(1600, 1200))
    [note] = settle(zendesk, stack, ticket, 1, timeout=60)
    html = note.html_body
    # The note, in Japanese, carrying the Japanese label the locate model was asked for.
    assert "の損傷をマークしました" in html and f"{JAPANESE_LABEL}(gpt-image-2 が赤丸で囲みました)" in html
    assert "確認事項" in html and f"ジョブ {job} のマーク済み写真" in html
    assert "marked the damage" not in html and "Checks:" not in html
    located = [r for r in openai_fake.located if subject in r["text"]]
    assert located and "one to three words, in Japanese." in located[0]["text"]
    # The label on the photo is deskmark's, in a Japanese font: a red box with white glyphs.
    [attachment] = marked_notes(zendesk, ticket)[0].attachments
    photo = Image.open(io.BytesIO(attachment.data)).convert("RGB")
    if os.environ.get("DESKMARK_KEEP"):  # a folder: the photo, for a person to look at
        photo.save(Path(os.environ["DESKMARK_KEEP"]) / "label-ja.png")
    region = stack.store.job(job)["mark"]["regions"][0]
    above = photo.crop((0, 0, photo.width, region[1]))
    red = ImageChops.subtract(above.getchannel("R"), above.getchannel("G")).point(lambda v: 255 if v > 120 else 0)
    assert red.getbbox() is not None  # the label's red box, above the ring
    # Its content credentials name the label; deskmark verify prints it.
    summary = credentials.read(attachment.data)
    assert summary is not None and [r["label"] for r in summary.regions] == [JAPANESE_LABEL]
    file = tmp_path / "marked.jpg"
    file.write_bytes(attachment.data)
    verify = subprocess.run([sys.executable, "-m", "deskmark.cli", "verify", str(file)], capture_output=True,
                            text=True, env={**os.environ, "REDIS_URL": stack.redis.url}, timeout=60)
    assert verify.returncode == 0 and f"'{JAPANESE_LABEL}'" in verify.stdout, verify.stdout
    # The Slack review, in Japanese too.
    review = wait_for(lambda: slack.messages_about(f"チケット #{ticket}"), timeout=30)
    assert review and "保証審査" in review[0].text
    assert [b["text"]["text"] for b in review[0].buttons()] == ["承認", "却下"]
    # The model's ring was kept (deskmark's own drawing is only the label), and the job
    # writes in Japanese on every retry.
    record = stack.store.job(job)
    assert record["language"] == "ja" and record["mark"]["marks"][0]["drawn_by"] == "model"


def test_auto_gives_each_requester_their_own_language(
    make_stack: Callable[..., Stack], zendesk: SandboxZendesk, openai_fake: SandboxOpenAI,
) -> None:
    stack = make_stack(DESKMARK_LANGUAGE="auto")
    german, _ = send_photo(zendesk, stack.web.url, f"Display gesprungen {uuid.uuid4().hex[:6]}", seed=96,
                           size=(1600, 1200), locale="de")
    japanese, _ = send_photo(zendesk, stack.web.url, f"画面割れ {uuid.uuid4().hex[:6]}", seed=97,
                             size=(1600, 1200), locale="ja")
    english, _ = send_photo(zendesk, stack.web.url, f"Cracked {uuid.uuid4().hex[:6]}", seed=98,
                            size=(1600, 1200), locale="en-GB")
    [de] = settle(zendesk, stack, german, 1, timeout=60)
    [ja] = settle(zendesk, stack, japanese, 1, timeout=60)
    [en] = settle(zendesk, stack, english, 1, timeout=60)
    assert "hat den Schaden auf" in de.html_body and "Displaybruch (rot eingekreist von gpt-image-2)" in de.html_body
    assert "Kosten 0,0" in de.html_body  # the locale's money: a decimal comma
    assert "の損傷をマークしました" in ja.html_body and JAPANESE_LABEL in ja.html_body
    assert "marked the damage on" in en.html_body and "cracked screen (circled in red" in en.html_body

