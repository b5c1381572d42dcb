"""`python -m cloud provision`: a fleet's CA, device and aggregator certificates, signing key, broker config and ACL.

Writes DIR/ca (the CA; its key never goes to a device), DIR/aggregator, DIR/devices/<device> (what each
device needs: client.crt, client.key, ca.crt, fleet-signing.pub), DIR/broker (mosquitto.conf, acl, the
broker's certificate) and DIR/fleet-signing.pub. Start the broker with `mosquitto -c DIR/broker/mosquitto.conf`,
then the devices with `python -m edge run --tls-ca ... --tls-cert ... --tls-key ...` (layout: cloud/provision.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.cli import EXIT_OK, fail, output_path_problem, positive_int


def _port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port 1..65535, got {text}")
    return value


MAX_DAYS = 36_500  # 100 years: far inside X.509's last date, 9999-12-31


def _days(text: str) -> int:
    value = positive_int(text)
    if value > MAX_DAYS:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_DAYS:,} days (100 years), got {text}")
    return value


def _address(text: str) -> str:
    """argparse type: an IP address or a DNS name (what the broker certificate names and devices dial)."""
    import ipaddress
    import re

    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    label = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    if len(text) > 253 or not re.fullmatch(rf"{label}(\.{label})*\.?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is neither an IP address nor a DNS name (letters, digits and "
                                         f"'-' in dot-separated labels), such as 192.168.1.10 or broker.lan")
    return text


def _topic_name(text: str) -> str:
    from cloud.provision import ProvisionError, check_name

    try:
        return check_name(text, "topic fleet name")
    except ProvisionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `provision` verb."""
    from cloud.provision import DEFAULT_DAYS, DEFAULT_HOST, DEFAULT_TLS_PORT

    p = sub.add_parser("provision", help="write a fleet's CA, device certificates, signing key and broker config",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--fleet", type=Path, required=True,
                   help="fleet file (.toml, .yaml; device ids as the planner names them) or the bundle directory "
                        "of `python -m simulator prepare --out DIR` (DIR or DIR/bundle)")
    p.add_argument("--out", type=Path, required=True, help="directory to write (must not hold a fleet CA already)")
    p.add_argument("--topic-fleet", type=_topic_name, default=None,
                   help="fleet name in the topics dmskd/<fleet>/... (default: a bundle's own; a fleet file's "
                        "[fleet] name with anything but letters, digits, '-', '_', '.' made '-')")
    p.add_argument("--host", type=_address, default=DEFAULT_HOST,
                   help="address devices dial (IP or DNS name): in the broker certificate beside 127.0.0.1 and "
                        "localhost, and where the broker listens unless --bind says otherwise")
    p.add_argument("--bind", type=_address, default=None,
                   help="address the broker listens on, if not --host (e.g. 0.0.0.0 behind a DNS name) "
                        "(default: --host)")
    p.add_argument("--port", type=_port, default=DEFAULT_TLS_PORT, help="the broker's TLS port")
    p.add_argument("--days", type=_days, default=DEFAULT_DAYS, help="validity of every certificate")
    p.add_argument("--password-auth", action="store_true",
                   help="fallback for brokers that take no client certificates: a TLS listener without client "
                        "certificates, a mosquitto password file and a random password per device "
                        "(DIR/devices/<device>/password), the same ACL")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Provision; a missing or bad fleet file or bundle, a name unfit for topics, an existing CA: exit 1."""
    from cloud.fleet_file import FleetFileError
    from cloud.provision import ProvisionError, provision, read_identities

    problem = output_path_problem(args.out, "--out", directory=True)
    if problem:
        return fail(problem)
    try:
        identities, origin = read_identities(args.fleet, args.topic_fleet)
        done = provision(identities, args.out, args.host, args.port, args.days, args.password_auth, args.bind)
    except (FileNotFoundError, FleetFileError, ProvisionError, ValueError) as exc:
        return fail(str(exc))
    out = done.out
    auth = "username + password over TLS" if done.password_auth else "TLS client certificates"
    print(f"fleet {identities.fleet!r} ({origin}): {len(identities.devices)} devices and the aggregator "
          f"{identities.aggregator!r} provisioned in {out} ({auth}, valid {args.days} days)")
    print(f"  broker:     mosquitto -c {done.broker_config.resolve()}   (listens on {done.bind}:{done.port})")
    agg = f"{out}/aggregator"
    print(f"  aggregator: python -m cloud aggregate --bundle B --broker {done.host}:{done.port} "
          f"--signing-key {agg}/fleet-signing.key {_login(agg, identities.aggregator, done.password_auth)}")
    first = identities.devices[0]
    dev = f"{out}/devices/{first}"
    print(f"  device:     python -m edge run --device {first} --fleet {identities.fleet} --data D "
          f"--broker {done.host}:{done.port} --fleet-key {dev}/fleet-signing.pub "
          f"{_login(dev, first, done.password_auth)}   (copy {dev}/ to the device)")
    print(f"  keep {out}/ca/ca.key and {agg}/ on the cloud side (the CA key best offline): never on a device")
    return EXIT_OK


def _login(directory: str, name: str, password_auth: bool) -> str:
    if password_auth:
        return f"--tls-ca {directory}/ca.crt --username {name} --password-file {directory}/password"
    return f"--tls-ca {directory}/ca.crt --tls-cert {directory}/client.crt --tls-key {directory}/client.key"
