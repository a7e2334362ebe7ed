"""A small certificate authority for the lab's workload identities.

Contract: `CA.create(trust_domain)` makes a self-signed EC P-256 root; `CA.load_or_create(dir)`
keeps it in `dir/ca.pem` + `dir/ca.key` (mode 0600). `issue(spiffe_id)` returns a leaf
certificate whose only SAN is the SPIFFE URI (serverAuth and clientAuth), signed by the root.
`write_identity(dir, name, spiffe_id)` writes `<name>.pem`, `<name>.key` (0600) and the
root as `ca.pem`, which is what the bootstrap's file_watcher certificate provider reads.
Private keys are never logged or returned in anything but the files/bytes asked for.
`default_ca_dir()`: where the reconciler keeps its CA (env RECONCILER_CA_DIR, else
/var/lib/netintent/ca, a 0700 directory); the host layer issues workload certificates from it.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def default_ca_dir() -> Path:
    return Path(os.environ.get("RECONCILER_CA_DIR") or "/var/lib/netintent/ca")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, secret: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)  # atomic: the file watcher never reads half a file


@dataclass(frozen=True)
class Identity:
    spiffe_id: str
    cert_file: str
    key_file: str
    ca_file: str


class CA:
    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self.cert = cert

    @classmethod
    def create(cls, trust_domain: str, days: int = 365) -> "CA":
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "netintent"),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"netintent CA {trust_domain}")])
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                               critical=True)
                .add_extension(x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]), critical=False)
                .sign(key, hashes.SHA256()))
        return cls(key, cert)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "CA | None":
        """The CA kept in `directory`, or None when there is none yet."""
        d = Path(directory)
        cert_p, key_p = d / "ca.pem", d / "ca.key"
        if not (cert_p.exists() and key_p.exists()):
            return None
        key = serialization.load_pem_private_key(key_p.read_bytes(), password=None)
        return cls(key, x509.load_pem_x509_certificate(cert_p.read_bytes()))  # type: ignore[arg-type]

    @classmethod
    def load_or_create(cls, directory: str | os.PathLike, trust_domain: str) -> "CA":
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        ca = cls.load(d)
        if ca is not None:
            return ca
        ca = cls.create(trust_domain)
        _write(d / "ca.key", _key_pem(ca._key), secret=True)
        _write(d / "ca.pem", ca.ca_pem)
        return ca

    @property
    def ca_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, spiffe_id: str, days: int = 30, dns: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
        """(certificate PEM, private key PEM) for one identity."""
        if not spiffe_id.startswith("spiffe://"):
            raise ValueError(f"not a SPIFFE id: {spiffe_id!r}")
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id)]
        sans += [x509.DNSName(d) for d in dns]
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "netintent")]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                               critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.SubjectAlternativeName(sans), critical=True)
                .sign(self._key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    def write_identity(self, directory: str | os.PathLike, name: str, spiffe_id: str) -> Identity:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cert, key = self.issue(spiffe_id)
        _write(d / f"{name}.key", key, secret=True)
        _write(d / f"{name}.pem", cert)
        _write(d / "ca.pem", self.ca_pem)
        return Identity(spiffe_id, str(d / f"{name}.pem"), str(d / f"{name}.key"), str(d / "ca.pem"))


def spiffe_ids_of(cert_pem: bytes) -> list[str]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith("spiffe://")]
