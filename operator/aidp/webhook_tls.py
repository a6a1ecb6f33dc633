"""The admission webhook's CA and serving certificate: issue, renew and rotate (pure logic).

State lives in one Secret (`aidp-webhook-tls`, type kubernetes.io/tls) in the operator's namespace:

- `ca.crt`/`ca.key`: the CA that signs OPA's serving certificate;
- `tls.crt`/`tls.key`: OPA's serving certificate;
- `ca-bundle.crt`: every CA that a client must trust right now (the current CA and, during a CA
  rotation, the previous one). The ValidatingWebhookConfiguration's caBundle is this bundle.

Rotation never drops a request: a new CA first joins the bundle (and the webhook's caBundle); only
then does a serving certificate from it replace the old one; the old CA leaves the bundle when the
certificate it signed is gone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509

from aidp.devcluster import pki

SERVING_LIFETIME = dt.timedelta(days=90)
CA_LIFETIME = dt.timedelta(days=365 * 2)
RENEW_FRACTION = 2 / 3  # renew once two thirds of the lifetime have passed (cert-manager's default)


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
        not_before=now - dt.timedelta(minutes=5),
    )


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
    certificate) takes two calls, so the webhook's caBundle is updated in between.
    """
    now = now or dt.datetime.now(dt.UTC)
    if current is not None and x509.load_pem_x509_certificate(current.ca_crt).not_valid_after_utc <= now:
        current = None  # an expired CA cannot be rotated gracefully: start over
    if current is None:
        ca = pki.new_ca("aidp-webhook-ca", days=ca_lifetime.days)
        leaf = _serving(ca, dns_names, ip_addresses, now, serving_lifetime)
        return TLSMaterial(ca.cert_pem, ca.key_pem, leaf.cert_pem, leaf.key_pem, _bundle(ca.cert)), "issued"

    ca_cert = x509.load_pem_x509_certificate(current.ca_crt)
    leaf_cert = x509.load_pem_x509_certificate(current.tls_crt)
    bundle = _bundle_certs(current.ca_bundle)

    # step 1 of a CA rotation: a fresh CA joins the bundle (it does not sign anything yet)
    if _due(ca_cert, now) and ca_cert.not_valid_after_utc > now:
        new_ca = pki.new_ca("aidp-webhook-ca", days=ca_lifetime.days)
        return (
            TLSMaterial(
                new_ca.cert_pem,
                new_ca.key_pem,
                current.tls_crt,
                current.tls_key,
                _bundle(ca_cert, new_ca.cert),
            ),
            "ca-rotation-started",
        )
    ca = pki.KeyPair(ca_cert, _load_key(current.ca_key))
    leaf_issuer_in_use = leaf_cert.issuer == ca_cert.subject and _signed_by(leaf_cert, ca_cert)
    names_ok = _sans(leaf_cert) == (set(dns_names), set(ip_addresses))

    # step 2: the serving certificate is due, was signed by the previous CA, or names changed
    if not leaf_issuer_in_use or _due(leaf_cert, now) or not names_ok or leaf_cert.not_valid_after_utc <= now:
        leaf = _serving(ca, dns_names, ip_addresses, now, serving_lifetime)
        reason = "renewed" if leaf_issuer_in_use else "signed-by-new-ca"
        return TLSMaterial(
            current.ca_crt, current.ca_key, leaf.cert_pem, leaf.key_pem, current.ca_bundle
        ), reason

    # step 3: CAs that signed nothing in use any more leave the bundle
    keep = [
        c for c in bundle if c.not_valid_after_utc > now and (_same(c, ca_cert) or _signed_by(leaf_cert, c))
    ]
    if not any(_same(c, ca_cert) for c in keep):
        keep.append(ca_cert)
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
