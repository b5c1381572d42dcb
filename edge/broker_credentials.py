"""How a client proves who it is to the broker: TLS files from the fleet's CA, or a username and password.

`python -m cloud provision` writes both (DESIGN.md §4, Identity). A device or the aggregator passes
`--tls-ca/--tls-cert/--tls-key` (mutual TLS: the certificate's CN is the broker username), or, where the
broker takes no client certificates, `--username/--password-file`, usually with `--tls-ca` alone (TLS
authenticates the broker, the password the client). `add_credential_arguments` and `credentials_from_args`
give every CLI the same flags and checks.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

TLS_FLAGS = "--tls-ca, --tls-cert and --tls-key"


class CredentialUsageError(ValueError):
    """Credential flags that do not go together (a wrong command line: exit 2)."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for TLS: the CA that signed the broker's certificate and, for mutual TLS, this client's pair."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise CredentialUsageError("a client certificate needs its key: pass --tls-cert and --tls-key together")

    @classmethod
    def from_dir(cls, directory: Path) -> TlsFiles:
        """The ca.crt, client.crt and client.key of a provisioned identity directory (devices/<id>, aggregator)."""
        d = Path(directory)
        return cls(d / "ca.crt", d / "client.crt", d / "client.key").check()

    @property
    def mutual(self) -> bool:
        """True when the client presents a certificate of its own."""
        return self.cert is not None

    def check(self) -> TlsFiles:
        """Return self if every file exists; else FileNotFoundError naming the file and the fix."""
        for flag, path in (("--tls-ca", self.ca), ("--tls-cert", self.cert), ("--tls-key", self.key)):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{flag} {path} not found; `python -m cloud provision --fleet FILE --out DIR` "
                                        f"writes DIR/devices/<device>/{{ca.crt,client.crt,client.key}}")
        return self


@dataclass(frozen=True)
class BrokerCredentials:
    """What a session presents: TLS files, a username and password, both, or neither (plain MQTT)."""

    tls: TlsFiles | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise CredentialUsageError("a broker login needs both --username and --password-file")

    @classmethod
    def from_identity_dir(cls, directory: Path, username: str | None = None) -> BrokerCredentials:
        """Mutual TLS from a provisioned directory; with `username`, its `password` file as well (fallback)."""
        d = Path(directory)
        if username is None:
            return cls(TlsFiles.from_dir(d))
        return cls(TlsFiles(d / "ca.crt").check(), username, read_password(d / "password"))


def read_password(path: Path) -> str:
    """The first line of a password file (as `python -m cloud provision --password-auth` writes it)."""
    if Path(path).is_dir():
        raise ValueError(f"--password-file {path} is a directory; pass the password file in it")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"--password-file {path} not found; `python -m cloud provision --password-auth` "
                                f"writes DIR/devices/<device>/password") from None
    except UnicodeDecodeError:
        raise ValueError(f"--password-file {path} is not UTF-8 text; pass the password file "
                         f"`python -m cloud provision --password-auth` wrote") from None
    except OSError as exc:
        raise ValueError(f"cannot read --password-file {path} ({exc.strerror}); check its permissions") from None
    password = text.splitlines()[0].strip() if text.strip() else ""
    if not password:
        raise ValueError(f"--password-file {path} is empty; it should hold the password on its first line")
    return password


def add_credential_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --tls-ca, --tls-cert, --tls-key, --username and --password-file (edge.cli convention)."""
    group = parser.add_argument_group("broker identity (python -m cloud provision writes these files)")
    group.add_argument("--tls-ca", type=Path, default=None,
                       help="CA certificate that signed the broker's certificate: connect over TLS "
                            "(default: none, plain MQTT)")
    group.add_argument("--tls-cert", type=Path, default=None,
                       help="this client's certificate, issued by the fleet CA; with --tls-ca and --tls-key "
                            "(default: none)")
    group.add_argument("--tls-key", type=Path, default=None,
                       help="the private key of --tls-cert (default: none)")
    group.add_argument("--username", default=None,
                       help="broker username, for brokers that take no client certificates (default: none)")
    group.add_argument("--password-file", type=Path, default=None,
                       help="file holding the password of --username on its first line (default: none)")


def credentials_from_args(args: argparse.Namespace) -> BrokerCredentials:
    """The credentials the flags ask for: CredentialUsageError if they do not go together (exit 2),
    FileNotFoundError naming a missing file (exit 1)."""
    ca, cert, key = args.tls_ca, args.tls_cert, args.tls_key
    login = args.username is not None or args.password_file is not None
    if args.username is not None and args.password_file is None:
        raise CredentialUsageError("--username needs --password-file (the password is never typed on the command line)")
    if args.password_file is not None and args.username is None:
        raise CredentialUsageError("--password-file needs --username")
    given = [v is not None for v in (ca, cert, key)]
    if any(given) and not all(given) and not (ca is not None and cert is None and key is None and login):
        raise CredentialUsageError(f"{TLS_FLAGS} go together (or --tls-ca alone with --username and "
                                   f"--password-file, for a broker that authenticates by password)")
    tls = TlsFiles(ca, cert, key).check() if ca is not None else None
    if login:
        return BrokerCredentials(tls, args.username, read_password(args.password_file))
    return BrokerCredentials(tls)


def credentials_or_exit_code(args: argparse.Namespace) -> BrokerCredentials | int:
    """The flags' credentials for a CLI verb, or, after printing what is wrong, its exit code (2 usage, 1 a file)."""
    from edge.cli import fail, usage

    try:
        return credentials_from_args(args)
    except CredentialUsageError as exc:
        return usage(str(exc))
    except (ValueError, FileNotFoundError) as exc:
        return fail(str(exc))
