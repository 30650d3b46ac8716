"""Content credentials (C2PA) on every delivered photo, and reading them back (`deskmark verify`).

The manifest says, inside the JPEG, where the marked photo came from:
- the customer's original as its ingredient, with its sha256 exactly as downloaded;
- `c2pa.opened` (the original), then `c2pa.edited`: by the edit model as software agent, with
  the IPTC source type `compositeWithTrainedAlgorithmicMedia`, when the model's strokes are in
  the photo; by deskmark, with no AI source type, when deskmark drew every mark itself;
- deskmark's own assertion (`org.deskmark.mark`): the marked regions, the job, the helpdesk
  and ticket, the original's sha256 and deskmark's version.

It is signed with `DESKMARK_C2PA_CERT` / `DESKMARK_C2PA_KEY` when they are set. Otherwise a
throwaway signer (a CA of its own and a leaf it issued) is made once per deployment and kept in
Redis, so that every worker signs with the same one; nobody outside trusts it, and the note
says so. c2pa refuses a self-signed leaf, hence the CA (../shared/VENDORS.md).
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Keys", "Provenance", "Summary", "sign", "read", "throwaway_keys", "keys_from_pem",
           "context", "fingerprint", "read_pem", "issuer_pem", "leaf_serial", "clean", "ASSERTION", "AI_COMPOSITE",
           "AI_SOURCE_TYPES"]

ASSERTION = "org.deskmark.mark"
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
AI_COMPOSITE = IPTC + "compositeWithTrainedAlgorithmicMedia"
# What a generator's own manifest says of what it made (read on customers' photos).
AI_SOURCE_TYPES = tuple(IPTC + t for t in ("trainedAlgorithmicMedia",
                                           "compositeWithTrainedAlgorithmicMedia",
                                           "algorithmicMedia"))
# A signer nobody has been told to trust: expected with the throwaway signer, not a failure.
UNTRUSTED = "signingCredential.untrusted"
THROWAWAY_NAME = "deskmark throwaway signer"


def _version() -> str:
    try:
        return metadata.version("deskmark")
    except metadata.PackageNotFoundError:
        return "0"


@dataclass(frozen=True)
class Keys:
    """A PEM certificate chain (leaf first) and its private key."""

    chain_pem: bytes
    key_pem: bytes
    throwaway: bool

    def signer(self) -> c2pa.Signer:
        info = c2pa.C2paSignerInfo(alg=b"es256", sign_cert=self.chain_pem,
                                   private_key=self.key_pem, ta_url=None)
        return c2pa.Signer.from_info(info)

    def to_json(self) -> str:
        return json.dumps({"chain": self.chain_pem.decode(), "key": self.key_pem.decode()})

    @classmethod
    def from_json(cls, text: str | bytes) -> Keys:
        data = json.loads(text)
        return cls(data["chain"].encode(), data["key"].encode(), throwaway=True)


def read_pem(value: str, what: str) -> bytes:
    """A PEM given as itself or as a file's path."""
    if "-----BEGIN" in value:
        return value.encode()
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"{what}: neither a PEM nor a readable file: {value!r}")
    return path.read_bytes()


def keys_from_pem(cert: str, key: str) -> Keys:
    """Keys from DESKMARK_C2PA_CERT / DESKMARK_C2PA_KEY (each the PEM or a path to it)."""
    return Keys(read_pem(cert, "DESKMARK_C2PA_CERT"), read_pem(key, "DESKMARK_C2PA_KEY"), throwaway=False)


def throwaway_keys(name: str = THROWAWAY_NAME) -> Keys:
    """A CA of its own and an ES256 leaf it issued, as c2pa wants them: BasicConstraints
    CA=false, digitalSignature, emailProtection, subject and authority key ids."""
    now = datetime.datetime.now(datetime.UTC)

    def subject(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "deskmark")])

    def usage(sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=not sign, content_commitment=False,
                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                             key_cert_sign=sign, crl_sign=sign, encipher_only=False,
                             decipher_only=False)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(subject(f"{name} CA"))
          .issuer_name(subject(f"{name} CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage(sign=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(subject(name)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return Keys(leaf.public_bytes(pem) + ca.public_bytes(pem),
                key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
                throwaway=True)


def context(*, thumbnails: bool = False, anchors: str | None = None) -> c2pa.Context:
    """The one c2pa context of every Reader and Builder (signing, the signals, the job page,
    `deskmark verify`): **no network at all**. c2pa fetches a remote manifest named in a photo's
    XMP (`dcterms:provenance`) and OCSP responses by default: a customer's photo could make the
    worker send requests anywhere. `anchors` (PEM): the CA a signature must chain to, to be
    "Trusted". No thumbnails: making them decodes the 12 MP original again, most of the time a
    signature takes with them, and adds ~75 KB to each photo (bench/credentials.py); the
    original's hash identifies it, and the delivered photo is its own preview."""
    config: dict[str, Any] = {
        "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
        "core": {"allowed_network_hosts": [], "decode_identity_assertions": False},
        "builder": {"thumbnail": {"enabled": thumbnails}},
    }
    if anchors:
        config["trust"] = {"user_anchors": anchors}
    return c2pa.Context.from_dict(config)


def fingerprint(pem: str | bytes) -> str:
    """SHA-256 of a certificate (the first in `pem`), as `deskmark verify --trust` takes it."""
    cert = x509.load_pem_x509_certificates(pem.encode() if isinstance(pem, str) else pem)[0]
    return cert.fingerprint(hashes.SHA256()).hex()


def issuer_pem(chain_pem: bytes) -> str:
    """The certificate a chain's signatures go back to (its last), as PEM: the anchor."""
    last = x509.load_pem_x509_certificates(chain_pem)[-1]
    return last.public_bytes(serialization.Encoding.PEM).decode()


def leaf_serial(chain_pem: bytes) -> str:
    return str(x509.load_pem_x509_certificates(chain_pem)[0].serial_number)


def clean(text: object, limit: int = 200) -> str:
    """Text from a manifest someone else wrote, fit to print: control characters dropped,
    at most `limit` characters."""
    kept = "".join(ch for ch in str(text) if ch.isprintable())
    return kept if len(kept) <= limit else kept[:limit - 1] + "…"


@dataclass(frozen=True)
class Provenance:
    """What the manifest says of one delivered photo."""

    job_id: str
    vendor: str
    ticket_id: str
    filename: str  # the customer's file name
    model: str | None  # the edit model whose strokes are in the photo; None: deskmark drew them
    regions: list[dict[str, Any]]  # {"label", "x", "y", "width", "height"} on the delivered photo


def sign(image: bytes, original: IO[bytes], original_type: str, facts: Provenance,
         keys: Keys, *, thumbnails: bool = False) -> bytes:
    """`image` (a JPEG) with content credentials. `original` is the customer's file as
    downloaded (its type as sniffed); read from its start, and left at its end."""
    original.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: original.read(1 << 20), b""):
        digest.update(chunk)
    edited: dict[str, Any] = {"action": "c2pa.edited",
                              "description": "circled the damage and labelled it"}
    if facts.model:
        edited |= {"softwareAgent": {"name": facts.model}, "digitalSourceType": AI_COMPOSITE}
    else:
        edited["softwareAgent"] = {"name": "deskmark", "version": _version()}
    manifest = {
        "claim_generator_info": [{"name": "deskmark", "version": _version()}],
        "title": clean(facts.filename), "format": "image/jpeg",
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [
                {"action": "c2pa.opened", "parameters": {"ingredientIds": ["original"]}},
                edited]}},
            {"label": ASSERTION, "data": {
                "job_id": facts.job_id, "helpdesk": facts.vendor, "ticket_id": facts.ticket_id,
                "original_sha256": digest.hexdigest(), "model": facts.model or "deskmark",
                "regions": facts.regions, "deskmark_version": _version(),
                # The CA the signature chains to, so that `deskmark verify --trust SHA256`
                # elsewhere can check it by fingerprint (a forger's own CA has another).
                "signer_ca": issuer_pem(keys.chain_pem)}},
        ],
    }
    # The ingredient is described, not read: handing c2pa the customer's file would parse the
    # customer's own manifest in this process and embed their manifest store (their GPS, their
    # name, their XMP ids) in the delivered photo. Its hash, format and title are what count.
    manifest["ingredients"] = [{"title": clean(facts.filename), "format": original_type,
                                "relationship": "parentOf", "label": "original",
                                "description": f"the customer's original, sha256:{digest.hexdigest()}"}]
    out = io.BytesIO()
    with c2pa.Builder(json.dumps(manifest), context(thumbnails=thumbnails)) as builder, \
            keys.signer() as signer:
        builder.sign(signer, "image/jpeg", io.BytesIO(image), out)
    original.seek(0, os.SEEK_END)
    return out.getvalue()


@dataclass(frozen=True)
class Summary:
    """What `deskmark verify` says of one photo."""

    valid: bool
    problems: list[str]  # why it does not validate (empty when valid)
    signer: str  # the signing certificate's common name, and its issuer
    trusted: bool  # False: a signer nobody has been told to trust (the throwaway one)
    original_sha256: str | None
    model: str | None
    regions: list[dict[str, Any]]
    job_id: str | None
    vendor: str | None
    ticket_id: str | None
    ai_source: str | None  # the IPTC source type an action declares, if any
    agent: str | None  # the software agent of that action
    signer_serial: str = ""  # the signing certificate's serial number
    signer_ca: str = ""  # the CA deskmark's assertion names (PEM), if it is deskmark's
    unreadable: str = ""  # why the manifest could not be read, when it could not

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def read(data: bytes | IO[bytes], content_type: str = "image/jpeg",
         anchors: str | None = None) -> Summary | None:
    """The photo's content credentials (from its bytes, or a file read from where it stands),
    summed up; None when it carries none. With `anchors`, `trusted` says whether the signature
    chains to them. Only for photos deskmark made: a manifest someone else wrote is read
    through worker.manifests, in a process of its own."""
    try:
        with c2pa.Reader(content_type, io.BytesIO(data) if isinstance(data, bytes) else data,
                         context=context(anchors=anchors)) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError.ManifestNotFound:
        return None
    except c2pa.C2paError.NotSupported:
        return Summary(False, [], "", False, None, None, [], None, None, None, None, None,
                       unreadable=f"content credentials cannot be read from a {content_type} file")
    except c2pa.C2paError as exc:
        return Summary(False, [clean(exc)], "", False, None, None, [], None, None, None, None, None,
                       unreadable=f"they are damaged ({type(exc).__name__})")
    active = store.get("manifests", {}).get(store.get("active_manifest") or "")
    statuses = store.get("validation_status") or []
    if active is None:
        # A manifest store whose active manifest could not be decoded (malformed, or bigger
        # than the reading process may allocate: worker.manifests): there, but unreadable.
        codes = [clean(s.get("code"), 60) for s in statuses if s.get("code") != UNTRUSTED]
        if not store.get("active_manifest") or not codes:
            return None
        return Summary(False, codes[:10], "", False, None, None, [], None, None, None, None, None,
                       unreadable=f"malformed ({codes[0]})")
    problems = [clean(f"{s.get('code')}: {s.get('explanation', '')}") for s in statuses
                if s.get("code") != UNTRUSTED]
    state = store.get("validation_state")
    valid = not problems and state in ("Valid", "Trusted", None)
    trusted = (state == "Trusted") if anchors else not any(s.get("code") == UNTRUSTED for s in statuses)
    ours: dict[str, Any] = {}
    ai_source = agent = None
    for assertion in active.get("assertions", []):
        label = assertion.get("label", "")
        if label == ASSERTION:
            ours = assertion.get("data") or {}
        elif label.startswith("c2pa.actions"):
            for action in (assertion.get("data") or {}).get("actions", []):
                source = action.get("digitalSourceType")
                if source in AI_SOURCE_TYPES and ai_source is None:
                    ai_source = source
                    found = action.get("softwareAgent")
                    agent = found.get("name") if isinstance(found, dict) else found
    if agent is None:
        generator = (active.get("claim_generator_info") or [{}])[0]
        agent = generator.get("name") if ai_source else None
    info = active.get("signature_info") or {}
    signer = clean(f"{info.get('common_name', '?')} (issued by {info.get('issuer', '?')})")

    def text(value: object) -> str | None:
        return clean(value) if value is not None else None

    regions = [{k: clean(v, 80) if isinstance(v, str) else v for k, v in r.items()}
               for r in ours.get("regions") or [] if isinstance(r, dict)][:20]
    ca = ours.get("signer_ca")
    return Summary(valid, problems[:10], signer, trusted, text(ours.get("original_sha256")),
                   text(ours.get("model")), regions, text(ours.get("job_id")), text(ours.get("helpdesk")),
                   text(ours.get("ticket_id")), text(ai_source), text(agent),
                   clean(info.get("cert_serial_number", ""), 100),
                   ca if isinstance(ca, str) and len(ca) < 8192 else "")
