"""The admission webhook's CA and serving certificate: issue, renew and rotate (pure logic).

State lives in two Secrets in the operator's namespace, so that what OPA's pods read never holds
the CA key:

- `aidp-webhook-tls` (type kubernetes.io/tls), read by the OPA agent and mounted into OPA:
  `tls.crt`/`tls.key` (OPA's serving certificate), `ca-bundle.crt` (every CA that a client must
  trust right now: the current CA and, during a CA rotation, the previous one; the
  ValidatingWebhookConfiguration's caBundle is this bundle) and `ca.crt` (the current CA
  certificate, public);
- `aidp-webhook-ca-key` (type Opaque), read by the operator only: `ca.crt`/`ca.key`, the CA that
  signs OPA's serving certificate.

Earlier operators kept the CA key in `aidp-webhook-tls` as well; `from_secrets` still reads that
layout, and the operator's next pass moves the key out (see controller/certs.py).

Rotation never drops a request: a new CA first joins the bundle (and the webhook's caBundle); only
then does a serving certificate from it replace the old one; the old CA leaves the bundle when the
certificate it signed is gone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509

from aidp import pki

SERVING_LIFETIME = dt.timedelta(days=90)
CA_LIFETIME = dt.timedelta(days=365 * 2)
RENEW_FRACTION = 2 / 3  # renew once two thirds of the lifetime have passed (cert-manager's default)
BACKDATE = dt.timedelta(minutes=5)  # certificates start a little in the past, for clock skew
CA_COMMON_NAME = "aidp-webhook-ca"


@dataclass(frozen=True)
class TLSMaterial:
    """The contents of the webhook TLS Secret, as PEM bytes."""

    ca_crt: bytes
    ca_key: bytes
    tls_crt: bytes
    tls_key: bytes
    ca_bundle: bytes

    def as_secret_data(self) -> dict[str, bytes]:
        return {
            "ca.crt": self.ca_crt,
            "ca.key": self.ca_key,
            "tls.crt": self.tls_crt,
            "tls.key": self.tls_key,
            "ca-bundle.crt": self.ca_bundle,
        }

    def serving_secret_data(self) -> dict[str, bytes]:
        """What OPA's pods may read: the serving certificate and key, and public CA certificates."""
        return {
            "tls.crt": self.tls_crt,
            "tls.key": self.tls_key,
            "ca-bundle.crt": self.ca_bundle,
            "ca.crt": self.ca_crt,
        }

    def ca_secret_data(self) -> dict[str, bytes]:
        """What only the operator reads: the CA certificate and its key."""
        return {"ca.crt": self.ca_crt, "ca.key": self.ca_key}

    @classmethod
    def from_secrets(
        cls, serving: dict[str, bytes] | None, ca: dict[str, bytes] | None
    ) -> TLSMaterial | None:
        """The material held in the serving Secret and the CA Secret (either may be absent). Without
        a CA Secret, a CA key in the serving Secret (the layout before the split) is used."""
        serving = serving or {}
        ca_source = ca if ca and "ca.key" in ca else serving
        merged = {k: v for k, v in serving.items() if k not in ("ca.crt", "ca.key")}
        for key in ("ca.crt", "ca.key"):
            if key in ca_source:
                merged[key] = ca_source[key]
        return cls.from_secret_data(merged)

    @classmethod
    def from_secret_data(cls, data: dict[str, bytes]) -> TLSMaterial | None:
        try:
            return cls(
                data["ca.crt"],
                data["ca.key"],
                data["tls.crt"],
                data["tls.key"],
                data.get("ca-bundle.crt") or data["ca.crt"],
            )
        except KeyError:
            return None


def _due(cert: x509.Certificate, now: dt.datetime) -> bool:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= start + (end - start) * RENEW_FRACTION


def _bundle(*certs: x509.Certificate) -> bytes:
    seen: set[bytes] = set()
    out = b""
    for cert in certs:
        fp = cert.fingerprint(cert.signature_hash_algorithm or pki.hashes.SHA256())
        if fp not in seen:
            seen.add(fp)
            out += pki.cert_pem(cert)
    return out


def _bundle_certs(bundle: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle) if bundle.strip() else []


def dns_names_for(service: str, namespace: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
        *extra,
    )


def _serving(
    ca: pki.KeyPair, dns: tuple[str, ...], ips: tuple[str, ...], now: dt.datetime, lifetime: dt.timedelta
) -> pki.KeyPair:
    return pki.issue(
        ca,
        dns[0] if dns else "aidp-opa",
        dns_names=dns,
        ip_addresses=ips,
        server=True,
        valid_for=lifetime,
        not_before=now - _backdate(lifetime),
    )


def _backdate(lifetime: dt.timedelta) -> dt.timedelta:
    """How far a certificate starts in the past (clock skew); short-lived ones stay mostly valid."""
    return min(BACKDATE, lifetime / 10)


def _new_ca(now: dt.datetime, lifetime: dt.timedelta) -> pki.KeyPair:
    """A CA with `pki.new_ca`'s profile, valid from `now` (backdated a little) for `lifetime`.

    `pki.new_ca` dates its certificate from the wall clock and in whole days; the rotation logic
    compares validity with `now`, so the CA must be dated from the same `now`.
    """
    template = pki.new_ca(CA_COMMON_NAME)
    builder = (
        x509.CertificateBuilder()
        .subject_name(template.cert.subject)
        .issuer_name(template.cert.issuer)
        .public_key(template.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _backdate(lifetime))
        .not_valid_after(now + lifetime)
    )
    for ext in template.cert.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    return pki.KeyPair(builder.sign(template.key, pki.hashes.SHA256()), template.key)


@dataclass(frozen=True)
class _Parsed:
    ca: pki.KeyPair
    leaf: x509.Certificate | None  # None: unreadable, or its key is not the certificate's
    bundle: list[x509.Certificate]  # empty when unreadable


def _parse(material: TLSMaterial) -> _Parsed | None:
    """The material's certificates and keys; None when the CA is unreadable or its key is not the CA's.

    A broken serving certificate or bundle is repaired by the steps of `reconcile`; only a broken CA
    makes it start over.
    """
    try:
        ca = pki.KeyPair(x509.load_pem_x509_certificate(material.ca_crt), _load_key(material.ca_key))
    except (ValueError, TypeError):
        return None
    if not _same_public_key(ca.cert, ca.key):
        return None
    leaf: x509.Certificate | None
    try:
        leaf = x509.load_pem_x509_certificate(material.tls_crt)
        if not _same_public_key(leaf, _load_key(material.tls_key)):
            leaf = None
    except (ValueError, TypeError):
        leaf = None
    try:
        bundle = _bundle_certs(material.ca_bundle)
    except ValueError:
        bundle = []
    return _Parsed(ca, leaf, bundle)


def reconcile(
    current: TLSMaterial | None,
    *,
    dns_names: tuple[str, ...],
    ip_addresses: tuple[str, ...] = (),
    now: dt.datetime | None = None,
    serving_lifetime: dt.timedelta = SERVING_LIFETIME,
    ca_lifetime: dt.timedelta = CA_LIFETIME,
) -> tuple[TLSMaterial, str | None]:
    """The TLS material to hold now, and a reason when it differs from `current` (None: keep).

    One step per call: a rotation that needs two steps (new CA into the bundle, then a new serving
    certificate) takes two calls, so the webhook's caBundle is updated in between. A serving
    certificate is only ever issued by a CA that the bundle of the previous call already holds.
    """
    now = now or dt.datetime.now(dt.UTC)
    parsed = _parse(current) if current is not None else None
    if current is None or parsed is None or parsed.ca.cert.not_valid_after_utc <= now:
        # nothing usable (absent, unreadable, or an expired CA that cannot be rotated gracefully)
        ca = _new_ca(now, ca_lifetime)
        leaf = _serving(ca, dns_names, ip_addresses, now, serving_lifetime)
        return TLSMaterial(ca.cert_pem, ca.key_pem, leaf.cert_pem, leaf.key_pem, _bundle(ca.cert)), "issued"

    ca, leaf_cert, bundle = parsed.ca, parsed.leaf, parsed.bundle
    ca_cert = ca.cert
    live = [c for c in bundle if c.not_valid_after_utc > now]

    # step 1 of a CA rotation: a fresh CA joins the bundle (it does not sign anything yet); the CAs
    # already there stay, so the serving certificate in use still verifies
    if _due(ca_cert, now):
        new_ca = _new_ca(now, ca_lifetime)
        return (
            TLSMaterial(
                new_ca.cert_pem,
                new_ca.key_pem,
                current.tls_crt,
                current.tls_key,
                _bundle(*live, ca_cert, new_ca.cert),
            ),
            "ca-rotation-started",
        )
    if not any(_same(c, ca_cert) for c in live):
        # the CA is missing from the bundle: clients must trust it before it signs what OPA serves
        return TLSMaterial(
            current.ca_crt, current.ca_key, current.tls_crt, current.tls_key, _bundle(*live, ca_cert)
        ), "ca-added-to-bundle"

    # step 2: the serving certificate is due, was signed by the previous CA, names changed, or it is
    # unusable
    if (
        leaf_cert is None
        or not _signed_by(leaf_cert, ca_cert)
        or _due(leaf_cert, now)
        or _sans(leaf_cert) != (set(dns_names), set(ip_addresses))
        or leaf_cert.not_valid_after_utc <= now
    ):
        leaf = _serving(ca, dns_names, ip_addresses, now, serving_lifetime)
        by_other_ca = leaf_cert is not None and not _signed_by(leaf_cert, ca_cert)
        reason = "signed-by-new-ca" if by_other_ca else "renewed"
        return TLSMaterial(
            current.ca_crt, current.ca_key, leaf.cert_pem, leaf.key_pem, current.ca_bundle
        ), reason

    # step 3: CAs that signed nothing in use any more leave the bundle
    keep = [c for c in live if _same(c, ca_cert) or _signed_by(leaf_cert, c)]
    trimmed = _bundle(*keep)
    if trimmed != current.ca_bundle:
        return TLSMaterial(
            current.ca_crt, current.ca_key, current.tls_crt, current.tls_key, trimmed
        ), "bundle-trimmed"
    return current, None


def _load_key(pem: bytes) -> pki.ec.EllipticCurvePrivateKey:
    key = pki.serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, pki.ec.EllipticCurvePrivateKey):
        raise ValueError("webhook CA key is not an EC key")
    return key


def _same(a: x509.Certificate, b: x509.Certificate) -> bool:
    return a.public_bytes(pki.serialization.Encoding.DER) == b.public_bytes(pki.serialization.Encoding.DER)


def _same_public_key(cert: x509.Certificate, key: pki.ec.EllipticCurvePrivateKey) -> bool:
    spki = pki.serialization.PublicFormat.SubjectPublicKeyInfo
    der = pki.serialization.Encoding.DER
    return cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


def _signed_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, pki.InvalidSignature):
        return False
    return True


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return set(ext.get_values_for_type(x509.DNSName)), {
        str(i) for i in ext.get_values_for_type(x509.IPAddress)
    }
