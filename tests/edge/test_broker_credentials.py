"""The broker identity flags of `python -m edge run` and `python -m cloud aggregate` (edge.broker_credentials):
which combinations are a wrong command line (exit 2), which name a missing file (exit 1), and what a session
built from them presents. The broker-side proofs are in tests/cloud/test_provision.py."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from edge.__main__ import main as edge_main
from edge.broker_credentials import (
    BrokerCredentials,
    CredentialUsageError,
    TlsFiles,
    add_credential_arguments,
    credentials_from_args,
)
from edge.cli import CliParser
from edge.mqtt_session import MqttSession

from ..cli_helpers import call, one_error_line


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, Path]:
    """Stand-ins for the three PEM files (the flag checks only need them to exist)."""
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "password").write_text("s3cret\n")
    files["password"] = tmp_path / "password"
    return files


def parse(argv: list[str]) -> argparse.Namespace:
    parser = CliParser(prog="t")
    add_credential_arguments(parser)
    return parser.parse_args(argv)


def _argv(template: list[str], files: dict[str, Path]) -> list[str]:
    return [str(files[a[1:-1]]) if a.startswith("{") else a for a in template]


USAGE_CASES = [
    (["--tls-ca", "{ca}"], "go together"),
    (["--tls-cert", "{cert}", "--tls-key", "{key}"], "go together"),
    (["--tls-ca", "{ca}", "--tls-cert", "{cert}"], "go together"),
    (["--tls-ca", "{ca}", "--tls-key", "{key}"], "go together"),
    (["--username", "meter-a"], "--username needs --password-file"),
    (["--password-file", "{password}"], "--password-file needs --username"),
]
USAGE_IDS = ["ca-alone", "no-ca", "no-key", "no-cert", "username-alone", "password-alone"]


@pytest.mark.parametrize("args, words", USAGE_CASES, ids=USAGE_IDS)
def test_tls_flags_that_do_not_go_together_are_a_usage_error(args: list[str], words: str,
                                                             pem_files: dict[str, Path]) -> None:
    with pytest.raises(CredentialUsageError, match=words):
        credentials_from_args(parse(_argv(args, pem_files)))


@pytest.mark.parametrize("args, words", USAGE_CASES, ids=USAGE_IDS)
def test_edge_run_exits_2_on_tls_flags_that_do_not_go_together(args: list[str], words: str,
                                                               pem_files: dict[str, Path], capsys) -> None:
    code, out, err = call(edge_main, ["run", "--device", "d", "--data", "x.npz", "--fleet-key", "k.pub",
                                      *_argv(args, pem_files)], capsys)
    assert code == 2 and out == "", err
    one_error_line(err, words)


@pytest.mark.parametrize("args, words", USAGE_CASES, ids=USAGE_IDS)
def test_cloud_aggregate_exits_2_on_tls_flags_that_do_not_go_together(args: list[str], words: str,
                                                                      pem_files: dict[str, Path], capsys) -> None:
    from cloud.__main__ import main as cloud_main

    code, out, err = call(cloud_main, ["aggregate", "--bundle", "b", *_argv(args, pem_files)], capsys)
    assert code == 2 and out == "", err
    one_error_line(err, words)


@pytest.mark.parametrize("missing, flag", [("ca", "--tls-ca"), ("cert", "--tls-cert"), ("key", "--tls-key")])
def test_a_missing_tls_file_exits_1_naming_it_in_both_clis(missing: str, flag: str, pem_files: dict[str, Path],
                                                          capsys) -> None:
    from cloud.__main__ import main as cloud_main

    pem_files[missing].unlink()
    tls = ["--tls-ca", str(pem_files["ca"]), "--tls-cert", str(pem_files["cert"]), "--tls-key", str(pem_files["key"])]
    for main, argv in ((edge_main, ["run", "--device", "d", "--data", "x.npz", "--fleet-key", "k.pub", *tls]),
                       (cloud_main, ["aggregate", "--bundle", "b", *tls])):
        code, _, err = call(main, argv, capsys)
        assert code == 1, err
        one_error_line(err, f"{flag} {pem_files[missing]} not found", "python -m cloud provision")


def test_flags_give_mutual_tls_or_a_password_login_over_server_tls(pem_files: dict[str, Path]) -> None:
    mutual = credentials_from_args(parse(_argv(["--tls-ca", "{ca}", "--tls-cert", "{cert}", "--tls-key", "{key}"],
                                               pem_files)))
    assert mutual == BrokerCredentials(TlsFiles(pem_files["ca"], pem_files["cert"], pem_files["key"]))
    assert mutual.tls is not None and mutual.tls.mutual
    fallback = credentials_from_args(parse(_argv(["--tls-ca", "{ca}", "--username", "meter-a", "--password-file",
                                                  "{password}"], pem_files)))
    assert fallback.tls == TlsFiles(pem_files["ca"]) and not fallback.tls.mutual
    assert (fallback.username, fallback.password) == ("meter-a", "s3cret")
    assert "s3cret" not in repr(fallback)
    assert credentials_from_args(parse([])) == BrokerCredentials()


def test_an_empty_or_missing_password_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        credentials_from_args(parse(["--username", "u", "--password-file", str(tmp_path / "empty")]))
    with pytest.raises(FileNotFoundError, match="--password-file .*missing not found"):
        credentials_from_args(parse(["--username", "u", "--password-file", str(tmp_path / "missing")]))


def test_identity_dir_without_its_files_names_the_file_and_provision(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--tls-ca .*ca.crt not found.*python -m cloud provision"):
        TlsFiles.from_dir(tmp_path)


def test_session_with_unreadable_pem_files_names_them_and_the_fix(pem_files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="cannot load the TLS files.*python -m cloud provision"):
        MqttSession("c", "127.0.0.1", 8883, tls=TlsFiles(pem_files["ca"], pem_files["cert"], pem_files["key"]))


def test_a_username_without_a_password_is_refused_by_the_session() -> None:
    with pytest.raises(ValueError, match="both a username and a password"):
        MqttSession("c", "127.0.0.1", 1883, username="u")
