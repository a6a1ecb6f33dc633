"""aidp.webhook_tls: issuing, renewing and rotating the webhook's CA and serving certificate.

Every chain is checked with `cryptography` itself: `verify_directly_issued_by` for the signature,
and a `PolicyBuilder` server verifier for what a TLS client (the API server) checks as well:
validity at the time, the DNS name, the serverAuth usage and the CA's constraints.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from aidp import webhook_tls
from aidp.webhook_tls import CA_LIFETIME, SERVING_LIFETIME, TLSMaterial, reconcile

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
DNS = webhook_tls.dns_names_for("aidp-opa", "aidp-system")
SERVICE_NAME = "aidp-opa.aidp-system.svc"  # the name the API server dials for a service webhook
IPS = ("10.96.0.20",)
# a serving certificate starts BACKDATE before it is issued and lasts SERVING_LIFETIME; it is due
# once two thirds of that have passed
SERVING_DUE = SERVING_LIFETIME * 2 / 3 - webhook_tls.BACKDATE


# --- helpers -------------------------------------------------------------------------------------


def cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def bundle_certs(material: TLSMaterial) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(material.ca_bundle)


def der(c: x509.Certificate) -> bytes:
    return c.public_bytes(serialization.Encoding.DER)


def in_bundle(c: x509.Certificate, material: TLSMaterial) -> bool:
    return der(c) in {der(b) for b in bundle_certs(material)}


def issued_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, InvalidSignature):
        return False
    return True


def client_accepts(bundle_pem: bytes, leaf_pem: bytes, at: dt.datetime, name: str = SERVICE_NAME) -> bool:
    """Would a TLS client that trusts `bundle_pem` accept `leaf_pem` as the server `name` at `at`?"""
    leaf = cert(leaf_pem)
    trusted = x509.load_pem_x509_certificates(bundle_pem)
    if not any(issued_by(leaf, ca) for ca in trusted):
        return False
    verifier = PolicyBuilder().store(Store(trusted)).time(at).build_server_verifier(x509.DNSName(name))
    try:
        verifier.verify(leaf, [])
    except VerificationError:
        return False
    return True


def public_der(key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def cert_public_der(c: x509.Certificate) -> bytes:
    return c.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sans(c: x509.Certificate) -> tuple[set[str], set[str]]:
    ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)), {
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)
    }


def due_at(c: x509.Certificate) -> dt.datetime:
    """Two thirds into the certificate's lifetime, rounded up to a whole second."""
    start, end = c.not_valid_before_utc, c.not_valid_after_utc
    due = start + (end - start) * 2 / 3
    return due.replace(microsecond=0) + (dt.timedelta(seconds=1) if due.microsecond else dt.timedelta(0))


def issue(at: dt.datetime = T0) -> TLSMaterial:
    material, reason = reconcile(None, dns_names=DNS, ip_addresses=IPS, now=at)
    assert reason == "issued"
    return material


def step(
    material: TLSMaterial | None,
    at: dt.datetime,
    *,
    dns_names: tuple[str, ...] = DNS,
    ip_addresses: tuple[str, ...] = IPS,
    serving_lifetime: dt.timedelta = SERVING_LIFETIME,
    ca_lifetime: dt.timedelta = CA_LIFETIME,
) -> tuple[TLSMaterial, str | None]:
    return reconcile(
        material,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        now=at,
        serving_lifetime=serving_lifetime,
        ca_lifetime=ca_lifetime,
    )


@pytest.fixture(scope="module")
def issued() -> TLSMaterial:
    return issue()


# --- first issue ---------------------------------------------------------------------------------


def test_first_issue_makes_a_ca_and_a_serving_certificate_it_signed(issued: TLSMaterial) -> None:
    ca, leaf = cert(issued.ca_crt), cert(issued.tls_crt)

    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert issued_by(ca, ca)  # self-signed
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert (
        ExtendedKeyUsageOID.SERVER_AUTH
        in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    assert issued_by(leaf, ca)
    assert [der(c) for c in bundle_certs(issued)] == [der(ca)]  # the bundle is exactly the CA
    assert client_accepts(issued.ca_bundle, issued.tls_crt, T0)


def test_first_issue_names_and_lifetimes(issued: TLSMaterial) -> None:
    leaf, ca = cert(issued.tls_crt), cert(issued.ca_crt)

    assert sans(leaf) == (set(DNS), set(IPS))
    assert DNS == (
        "aidp-opa",
        "aidp-opa.aidp-system",
        "aidp-opa.aidp-system.svc",
        "aidp-opa.aidp-system.svc.cluster.local",
    )
    for name in DNS:
        assert client_accepts(issued.ca_bundle, issued.tls_crt, T0, name)
    assert not client_accepts(issued.ca_bundle, issued.tls_crt, T0, "evil.example.com")
    ip_verifier = (
        PolicyBuilder()
        .store(Store(bundle_certs(issued)))
        .time(T0)
        .build_server_verifier(x509.IPAddress(ipaddress.ip_address(IPS[0])))
    )
    ip_verifier.verify(leaf, [])  # raises when the IP SAN is missing
    # valid from a little before now (clock skew), for the configured lifetimes
    for c in (leaf, ca):
        assert c.not_valid_before_utc == T0 - webhook_tls.BACKDATE
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == SERVING_LIFETIME
    assert ca.not_valid_after_utc - T0 == CA_LIFETIME
    assert due_at(leaf) == T0 + SERVING_DUE


def test_first_issue_keys_match_their_certificates(issued: TLSMaterial) -> None:
    assert public_der(issued.tls_key) == cert_public_der(cert(issued.tls_crt))
    assert public_der(issued.ca_key) == cert_public_der(cert(issued.ca_crt))
    assert public_der(issued.tls_key) != public_der(issued.ca_key)


def test_default_now_is_the_wall_clock() -> None:
    material, reason = reconcile(None, dns_names=DNS)
    wall = dt.datetime.now(dt.UTC)
    assert reason == "issued"
    assert client_accepts(material.ca_bundle, material.tls_crt, wall)
    assert sans(cert(material.tls_crt)) == (set(DNS), set())
    # and the wall clock is what "nothing due" is measured against
    assert reconcile(material, dns_names=DNS) == (material, None)


# --- nothing due ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "later", [dt.timedelta(0), dt.timedelta(days=1), SERVING_DUE - dt.timedelta(minutes=1)]
)
def test_nothing_due_is_a_no_op(issued: TLSMaterial, later: dt.timedelta) -> None:
    material, reason = step(issued, T0 + later)
    assert reason is None
    assert material == issued


# --- serving certificate renewal -----------------------------------------------------------------


def test_serving_certificate_renewed_once_two_thirds_of_its_lifetime_passed(issued: TLSMaterial) -> None:
    assert step(issued, T0 + SERVING_DUE - dt.timedelta(seconds=1))[1] is None
    at = T0 + SERVING_DUE
    renewed, reason = step(issued, at)

    assert reason == "renewed"
    assert (renewed.ca_crt, renewed.ca_key, renewed.ca_bundle) == (
        issued.ca_crt,
        issued.ca_key,
        issued.ca_bundle,
    )
    new_leaf = cert(renewed.tls_crt)
    assert renewed.tls_crt != issued.tls_crt
    assert public_der(renewed.tls_key) == cert_public_der(new_leaf)
    assert public_der(renewed.tls_key) != public_der(issued.tls_key)  # a fresh key
    assert issued_by(new_leaf, cert(issued.ca_crt))
    assert new_leaf.not_valid_after_utc - at == SERVING_LIFETIME - webhook_tls.BACKDATE
    assert sans(new_leaf) == (set(DNS), set(IPS))
    # clients that trust the unchanged bundle accept both the old and the new certificate
    assert client_accepts(issued.ca_bundle, renewed.tls_crt, at)
    assert client_accepts(renewed.ca_bundle, issued.tls_crt, at)
    # and then nothing is due again
    assert step(renewed, at + dt.timedelta(days=1)) == (renewed, None)


def test_expired_serving_certificate_is_replaced(issued: TLSMaterial) -> None:
    at = T0 + SERVING_LIFETIME + dt.timedelta(days=3)
    renewed, reason = step(issued, at)
    assert reason == "renewed"
    assert not client_accepts(issued.ca_bundle, issued.tls_crt, at)
    assert client_accepts(renewed.ca_bundle, renewed.tls_crt, at)


@pytest.mark.parametrize(
    ("dns", "ips"),
    [
        ((*DNS, "opa.example.com"), IPS),  # a name added
        (DNS[:2], IPS),  # names removed
        (DNS, ()),  # the IP removed
        (DNS, ("10.96.0.21",)),  # the IP changed
    ],
)
def test_san_change_forces_reissue(issued: TLSMaterial, dns: tuple[str, ...], ips: tuple[str, ...]) -> None:
    at = T0 + dt.timedelta(days=1)
    renewed, reason = reconcile(issued, dns_names=dns, ip_addresses=ips, now=at)
    assert reason == "renewed"
    assert sans(cert(renewed.tls_crt)) == (set(dns), set(ips))
    assert renewed.ca_crt == issued.ca_crt
    assert renewed.ca_bundle == issued.ca_bundle
    assert client_accepts(renewed.ca_bundle, renewed.tls_crt, at, dns[0])
    assert reconcile(renewed, dns_names=dns, ip_addresses=ips, now=at) == (renewed, None)


def test_san_order_does_not_force_reissue(issued: TLSMaterial) -> None:
    assert step(issued, T0, dns_names=tuple(reversed(DNS))) == (issued, None)


# --- CA rotation ---------------------------------------------------------------------------------


def test_ca_rotation_overlaps_the_old_and_the_new_ca(issued: TLSMaterial) -> None:
    old_ca = cert(issued.ca_crt)
    at = due_at(old_ca)
    assert dt.timedelta(days=486) < at - T0 < dt.timedelta(days=487)
    # the serving certificate is kept current up to then (the operator renews it every 60 days)
    current = step(issued, at - dt.timedelta(days=1))[0]
    assert cert(current.ca_crt) == old_ca
    assert step(current, at - dt.timedelta(seconds=1)) == (current, None)

    # step 1: a new CA joins the bundle; it signs nothing yet, the serving certificate is unchanged
    one, reason = step(current, at)
    assert reason == "ca-rotation-started"
    new_ca = cert(one.ca_crt)
    assert der(new_ca) != der(old_ca)
    assert public_der(one.ca_key) == cert_public_der(new_ca)
    assert (one.tls_crt, one.tls_key) == (current.tls_crt, current.tls_key)
    assert in_bundle(old_ca, one) and in_bundle(new_ca, one)
    assert len(bundle_certs(one)) == 2
    assert client_accepts(one.ca_bundle, one.tls_crt, at)
    assert new_ca.not_valid_before_utc == at - webhook_tls.BACKDATE
    assert new_ca.not_valid_after_utc - at == CA_LIFETIME

    # step 2: a serving certificate from the new CA; the bundle (both CAs) is unchanged
    two, reason = step(one, at)
    assert reason == "signed-by-new-ca"
    assert (two.ca_crt, two.ca_key, two.ca_bundle) == (one.ca_crt, one.ca_key, one.ca_bundle)
    assert issued_by(cert(two.tls_crt), new_ca)
    assert not issued_by(cert(two.tls_crt), old_ca)
    assert public_der(two.tls_key) == cert_public_der(cert(two.tls_crt))
    assert client_accepts(two.ca_bundle, two.tls_crt, at)

    # step 3: nothing in use is signed by the old CA any more: it leaves the bundle
    three, reason = step(two, at)
    assert reason == "bundle-trimmed"
    assert [der(c) for c in bundle_certs(three)] == [der(new_ca)]
    assert (three.ca_crt, three.tls_crt, three.tls_key) == (two.ca_crt, two.tls_crt, two.tls_key)
    assert client_accepts(three.ca_bundle, three.tls_crt, at)
    assert not client_accepts(three.ca_bundle, current.tls_crt, at)  # the old CA is really gone

    assert step(three, at) == (three, None)


def test_old_ca_stays_in_the_bundle_while_the_certificate_in_use_is_signed_by_it(issued: TLSMaterial) -> None:
    at = due_at(cert(issued.ca_crt))
    one, _ = step(issued, at)
    old_ca = cert(issued.ca_crt)
    # however late the next step comes, it replaces the serving certificate before trimming
    for later in (at, at + dt.timedelta(days=30), at + dt.timedelta(days=200)):
        nxt, reason = step(one, later)
        assert reason == "signed-by-new-ca"
        assert in_bundle(old_ca, nxt)


def test_an_unused_ca_leaves_the_bundle(issued: TLSMaterial) -> None:
    stranger = issue(T0)  # another CA that signs nothing this material serves
    padded = dataclasses.replace(issued, ca_bundle=issued.ca_bundle + stranger.ca_crt)
    trimmed, reason = step(padded, T0)
    assert reason == "bundle-trimmed"
    assert trimmed.ca_bundle == issued.ca_bundle


def test_ca_missing_from_the_bundle_is_added_before_it_signs_anything(issued: TLSMaterial) -> None:
    stranger = issue(T0)
    # a bundle without the current CA (edited by hand, say) and a serving certificate that is due
    broken = dataclasses.replace(issued, ca_bundle=stranger.ca_crt)
    at = T0 + SERVING_DUE
    fixed, reason = step(broken, at)
    assert reason == "ca-added-to-bundle"
    assert (fixed.tls_crt, fixed.ca_crt) == (broken.tls_crt, broken.ca_crt)
    assert in_bundle(cert(issued.ca_crt), fixed)
    renewed, reason = step(fixed, at)
    assert reason == "renewed"
    assert client_accepts(fixed.ca_bundle, renewed.tls_crt, at)


def test_expired_ca_starts_over(issued: TLSMaterial) -> None:
    at = T0 + CA_LIFETIME + dt.timedelta(days=1)
    fresh, reason = step(issued, at)
    assert reason == "issued"
    assert der(cert(fresh.ca_crt)) != der(cert(issued.ca_crt))
    assert [der(c) for c in bundle_certs(fresh)] == [der(cert(fresh.ca_crt))]
    assert client_accepts(fresh.ca_bundle, fresh.tls_crt, at)
    assert not client_accepts(issued.ca_bundle, issued.tls_crt, at)
    assert step(fresh, at) == (fresh, None)


# --- unusable material ---------------------------------------------------------------------------


GARBAGE = b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize("field", ["ca_crt", "ca_key"])
def test_unreadable_ca_starts_over(issued: TLSMaterial, field: str) -> None:
    fresh, reason = step(dataclasses.replace(issued, **{field: GARBAGE}), T0)
    assert reason == "issued"
    assert fresh.ca_crt != issued.ca_crt
    assert client_accepts(fresh.ca_bundle, fresh.tls_crt, T0)


def test_unreadable_serving_certificate_is_reissued_by_the_same_ca(issued: TLSMaterial) -> None:
    fixed, reason = step(dataclasses.replace(issued, tls_crt=GARBAGE), T0)
    assert reason == "renewed"
    assert (fixed.ca_crt, fixed.ca_bundle) == (issued.ca_crt, issued.ca_bundle)
    assert client_accepts(issued.ca_bundle, fixed.tls_crt, T0)


def test_unreadable_bundle_gets_the_ca_back(issued: TLSMaterial) -> None:
    fixed, reason = step(dataclasses.replace(issued, ca_bundle=GARBAGE), T0)
    assert reason == "ca-added-to-bundle"
    assert (fixed.ca_crt, fixed.tls_crt) == (issued.ca_crt, issued.tls_crt)
    assert fixed.ca_bundle == issued.ca_crt
    assert step(fixed, T0) == (fixed, None)


def test_ca_key_of_another_ca_starts_over(issued: TLSMaterial) -> None:
    other = issue(T0)
    fresh, reason = step(dataclasses.replace(issued, ca_key=other.ca_key), T0)
    assert reason == "issued"
    assert public_der(fresh.ca_key) == cert_public_der(cert(fresh.ca_crt))
    assert client_accepts(fresh.ca_bundle, fresh.tls_crt, T0)


@pytest.mark.parametrize("tls_key", ["other", "garbage"])
def test_serving_key_not_matching_its_certificate_is_reissued(issued: TLSMaterial, tls_key: str) -> None:
    key = issue(T0).tls_key if tls_key == "other" else b"garbage"
    renewed, reason = step(dataclasses.replace(issued, tls_key=key), T0)
    assert reason == "renewed"
    assert renewed.ca_crt == issued.ca_crt
    assert public_der(renewed.tls_key) == cert_public_der(cert(renewed.tls_crt))


# --- the no-dropped-request property over whole rotations ----------------------------------------


def run_operator(
    days: int,
    *,
    every: dt.timedelta,
    until_stable: bool,
    ca_lifetime: dt.timedelta,
    serving_lifetime: dt.timedelta,
) -> list[str]:
    """Call reconcile like the operator does, checking every step; return the reasons seen."""
    material, reason = step(None, T0, ca_lifetime=ca_lifetime, serving_lifetime=serving_lifetime)
    assert reason == "issued"
    reasons: list[str] = []
    at = T0
    end = T0 + dt.timedelta(days=days)
    while at < end:
        at += every
        for _ in range(4 if until_stable else 1):
            new, reason = step(material, at, ca_lifetime=ca_lifetime, serving_lifetime=serving_lifetime)
            if reason is None:
                assert new == material
                break
            reasons.append(reason)
            # the webhook still trusts the previous bundle while OPA already serves the new certificate
            assert client_accepts(material.ca_bundle, new.tls_crt, at), (at, reason)
            # and OPA may still serve the previous certificate once the webhook trusts the new bundle
            assert client_accepts(new.ca_bundle, material.tls_crt, at), (at, reason)
            assert client_accepts(new.ca_bundle, new.tls_crt, at), (at, reason)
            material = new
        else:
            if until_stable:
                pytest.fail(f"no fixed point at {at}: {reasons[-4:]}")
    return reasons


@pytest.mark.parametrize("until_stable", [False, True], ids=["one-call-per-tick", "until-stable"])
def test_no_request_dropped_over_years_of_rotations(until_stable: bool) -> None:
    reasons = run_operator(
        3 * 365 + 30,
        every=dt.timedelta(days=1),
        until_stable=until_stable,
        ca_lifetime=CA_LIFETIME,
        serving_lifetime=SERVING_LIFETIME,
    )
    assert "issued" not in reasons  # a running operator never has to start over
    assert reasons.count("ca-rotation-started") == 2  # at ~487 and ~974 days
    assert reasons.count("signed-by-new-ca") == 2
    assert reasons.count("bundle-trimmed") == 2
    assert reasons.count("renewed") >= 15


def test_no_request_dropped_with_short_lifetimes_and_uneven_checks() -> None:
    # a CA barely longer-lived than its serving certificates, checked every 7 hours
    reasons = run_operator(
        120,
        every=dt.timedelta(hours=7),
        until_stable=False,
        ca_lifetime=dt.timedelta(days=6),
        serving_lifetime=dt.timedelta(days=2),
    )
    assert "issued" not in reasons
    assert reasons.count("ca-rotation-started") >= 25
    assert set(reasons) == {"renewed", "ca-rotation-started", "signed-by-new-ca", "bundle-trimmed"}


# --- the Secret --------------------------------------------------------------------------------


def test_secret_data_round_trip(issued: TLSMaterial) -> None:
    data = issued.as_secret_data()
    assert set(data) == {"ca.crt", "ca.key", "tls.crt", "tls.key", "ca-bundle.crt"}
    assert data["tls.crt"] == issued.tls_crt and data["ca-bundle.crt"] == issued.ca_bundle
    assert TLSMaterial.from_secret_data(data) == issued


@pytest.mark.parametrize("missing", ["ca.crt", "ca.key", "tls.crt", "tls.key"])
def test_secret_data_missing_a_key_is_none(issued: TLSMaterial, missing: str) -> None:
    data = issued.as_secret_data()
    del data[missing]
    assert TLSMaterial.from_secret_data(data) is None


def test_secret_data_without_a_bundle_trusts_the_ca(issued: TLSMaterial) -> None:
    data = issued.as_secret_data()
    del data["ca-bundle.crt"]
    material = TLSMaterial.from_secret_data(data)
    assert material is not None
    assert material.ca_bundle == issued.ca_crt
    assert step(material, T0) == (material, None)


def test_secret_data_empty_is_none() -> None:
    assert TLSMaterial.from_secret_data({}) is None


# --- two Secrets: what OPA's pods read never holds the CA key ---------------------------------------


def test_the_serving_secret_holds_no_ca_key(issued: TLSMaterial) -> None:
    serving, ca = issued.serving_secret_data(), issued.ca_secret_data()
    assert set(serving) == {"tls.crt", "tls.key", "ca-bundle.crt", "ca.crt"}
    assert issued.ca_key not in serving.values()
    assert ca == {"ca.crt": issued.ca_crt, "ca.key": issued.ca_key}
    assert TLSMaterial.from_secrets(serving, ca) == issued


def test_the_one_secret_layout_is_still_read(issued: TLSMaterial) -> None:
    legacy = issued.as_secret_data()  # everything in one Secret, as earlier operators wrote it
    assert TLSMaterial.from_secrets(legacy, None) == issued
    # once the CA Secret exists it wins over a stale key left in the serving Secret
    other = step(None, T0)[0]
    stale = {**issued.serving_secret_data(), "ca.key": other.ca_key, "ca.crt": other.ca_crt}
    assert TLSMaterial.from_secrets(stale, issued.ca_secret_data()) == issued


def test_without_the_ca_secret_nor_a_legacy_key_it_starts_over(issued: TLSMaterial) -> None:
    assert TLSMaterial.from_secrets(issued.serving_secret_data(), None) is None
    assert TLSMaterial.from_secrets(None, issued.ca_secret_data()) is None
    assert TLSMaterial.from_secrets(None, None) is None
