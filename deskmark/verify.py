"""`deskmark verify IMAGE... [--trust CERT_FILE|SHA256]`: what a delivered photo's content
credentials say, whether they are intact, and whether this deployment signed them.

A signature validates for anyone with a key and a CA of their own (a look-alike CA with the
same names signs "valid" credentials), so validity is not enough: the signature must chain to
this deployment's signer. That is the certificate in DESKMARK_C2PA_CERT (its issuer, and the
leaf by serial number), or else the throwaway CA kept in Redis; on another machine, the CA's
certificate file or its SHA-256 fingerprint (`deskmark check` and the dashboard print it) given
with `--trust`. Exit 0 when every photo carries credentials that validate and were signed by
that signer, 1 otherwise. Photos are read in a process of their own (worker.manifests): a file
handed to verify may come from anyone. Everything printed from a manifest has its control
characters removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from worker import credentials, images, manifests

__all__ = ["run_verify", "Trust", "deployment_trust", "parse_trust"]

_FINGERPRINT = re.compile(r"(?i)(?:sha256:)?((?:[0-9a-f]{2}:?){32})")


@dataclass(frozen=True)
class Trust:
    """Whose signature counts: a CA (PEM) to chain to, or a CA's fingerprint to find in the
    photo's own deskmark assertion and then chain to; and, for a configured certificate, the
    leaf's serial number."""

    anchor_pem: str | None = None
    fingerprint: str | None = None
    leaf_serial: str | None = None
    source: str = ""


def parse_trust(value: str) -> Trust:
    """`--trust`: a certificate file (PEM) or a SHA-256 fingerprint (hex, colons allowed)."""
    match = _FINGERPRINT.fullmatch(value.strip())
    if match:
        return Trust(fingerprint=match.group(1).replace(":", "").lower(), source=f"--trust {value}")
    path = Path(value).expanduser()
    try:
        pem = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--trust {value}: neither a SHA-256 fingerprint nor a readable PEM "
                         f"file ({exc})") from None
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError(f"--trust {value}: no PEM certificate in that file")
    return Trust(anchor_pem=credentials.issuer_pem(pem.encode()), source=f"--trust {value}")


def deployment_trust(cert: str | None, signer_json: str | None) -> Trust | None:
    """This deployment's signer: DESKMARK_C2PA_CERT, else the throwaway one (its JSON, from
    Redis); None when neither is known here."""
    if cert:
        chain = credentials.read_pem(cert, "DESKMARK_C2PA_CERT")
        return Trust(anchor_pem=credentials.issuer_pem(chain), leaf_serial=credentials.leaf_serial(chain),
                     source="DESKMARK_C2PA_CERT")
    if signer_json:
        chain = credentials.Keys.from_json(signer_json).chain_pem
        return Trust(anchor_pem=credentials.issuer_pem(chain), source="the deployment's throwaway signer")
    return None


def _verdict(path: str, data: bytes, trust: Trust | None) -> tuple[bool, list[str]]:
    kind = images.mime_type(data)
    if kind is None:
        return False, [f"{path}: not an image deskmark delivers (JPEG, PNG, WebP, GIF or HEIC)"]
    anchor = trust.anchor_pem if trust else None
    summary = manifests.read_untrusted(data, kind, anchors=anchor)
    if trust is not None and trust.fingerprint and isinstance(summary, credentials.Summary):
        # The CA the photo's deskmark assertion names: trusted only if it is the one given,
        # and then the signature must really chain to it.
        named = summary.signer_ca
        if named and credentials.fingerprint(named) == trust.fingerprint:
            summary = manifests.read_untrusted(data, kind, anchors=named)
        else:
            summary = credentials.Summary(**{**summary.to_dict(), "trusted": False})
    if isinstance(summary, manifests.Unreadable):
        return False, [f"{path}: its content credentials could not be read ({summary.reason})"]
    if summary is None:
        return False, [f"{path}: no content credentials: not a photo as deskmark delivered it (a "
                       "re-saved, cropped or screenshotted copy loses them)"]
    lines = describe(path, summary, trust)
    ours = summary.trusted and (trust is None or not trust.leaf_serial
                                or summary.signer_serial == trust.leaf_serial)
    return summary.valid and ours and trust is not None, lines


def describe(path: str, summary: credentials.Summary, trust: Trust | None = None) -> list[str]:
    clean = credentials.clean
    if summary.unreadable:
        lines = [f"{path}: its content credentials could not be read ({clean(summary.unreadable)})"]
    elif not summary.valid:
        changed = any("mismatch" in p or "hash" in p.lower() for p in summary.problems)
        lines = [f"{path}: INVALID: " + ("the photo was changed after it was signed: its pixels or "
                                         "its credentials are not what was signed" if changed else
                                         "its content credentials do not hold together (damaged, "
                                         "or not written by a C2PA signer)")]
        # c2pa's own codes, for whoever wants to look them up; not its wording.
        codes = sorted({clean(p.split(":", 1)[0], 80) for p in summary.problems})
        lines += [f"  c2pa reports     {', '.join(codes)}"] if codes else []
    elif trust is None:
        lines = [f"{path}: intact, but whose signature it is cannot be told here: run this on the "
                 "deployment, or give --trust with the fingerprint `deskmark check` prints"]
    elif not summary.trusted or (trust.leaf_serial and summary.signer_serial != trust.leaf_serial):
        lines = [f"{path}: signed by someone else: a valid signature, but not by this deployment's "
                 f"signer ({trust.source})"]
    else:
        lines = [f"{path}: valid, signed by this deployment ({trust.source})"]
    if summary.original_sha256:
        lines.append(f"  original sha256  {clean(summary.original_sha256)}")
    if summary.model:
        marked_by = (f"{clean(summary.model)} (the model's strokes; source type "
                     "compositeWithTrainedAlgorithmicMedia)" if summary.ai_source else
                     "deskmark's own drawing (no AI model)")
        lines.append(f"  marked by        {marked_by}")
    elif summary.ai_source:
        source = clean(summary.ai_source.rsplit("/", 1)[-1])
        lines.append(f"  generated by     {clean(summary.agent or 'a generative tool')} ({source})")
    for region in summary.regions:
        lines.append(f"  region           {clean(region.get('label', 'damage'))!r} at x={clean(region.get('x'))} "
                     f"y={clean(region.get('y'))}, {clean(region.get('width'))}×{clean(region.get('height'))} px")
    if summary.job_id:
        lines.append(f"  job              {clean(summary.job_id)} ({clean(summary.vendor)} ticket "
                     f"{clean(summary.ticket_id)})")
    if summary.signer:
        lines.append(f"  signer           {clean(summary.signer)}")
    return lines


def run_verify(paths: list[str], trust: Trust | None) -> int:
    ok = True
    for path in paths:
        shown = credentials.clean(path, 300)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            print(f"{shown}: cannot be read ({exc.strerror or exc})")
            ok = False
            continue
        good, lines = _verdict(shown, data, trust)
        print("\n".join(lines))
        ok = ok and good
    return 0 if ok else 1
