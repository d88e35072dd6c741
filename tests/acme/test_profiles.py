"""ACME profiles (draft-aaron-acme-profiles): sent where the server offers them, else refused."""

from __future__ import annotations

from tests.acme.ari_server import AriServer
from tests.acme.conftest import AcmeHome

PROFILES = {"classic": "the usual 90 days", "shortlived": "six days"}


def test_the_configured_profile_goes_into_the_new_order(
    acme_home: AcmeHome, ari: AriServer
) -> None:
    ari.profiles = dict(PROFILES)
    acme_home.configure(directory=ari.directory_url, profile="shortlived")
    result = acme_home.issue("web", "profile.example.com")
    assert result.exit_code == 0, result.stderr
    acme_home.verified("web", "profile.example.com")
    assert ari.log.new_orders[-1]["profile"] == "shortlived"


def test_a_profile_the_server_does_not_offer_is_refused_before_anything_is_planned(
    acme_home: AcmeHome, ari: AriServer
) -> None:
    ari.profiles = dict(PROFILES)
    acme_home.configure(directory=ari.directory_url, profile="tlsserver")
    result = acme_home.issue("web", "no-profile.example.com")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "offers no profile 'tlsserver' (it offers: classic, shortlived)" in result.stderr
    assert f"set issuers.pebble.profile in {acme_home.config_path}" in result.stderr
    assert acme_home.certificate("web") is None
    assert ari.log.new_orders == []
    check = acme_home.cli("issuer", "check", "pebble")
    assert check.exit_code == 1 and "[FAIL] directory" in check.stdout


def test_without_profiles_on_the_server_none_is_sent(acme_home: AcmeHome, ari: AriServer) -> None:
    acme_home.configure(directory=ari.directory_url, profile="shortlived")
    assert acme_home.issue("web", "plain-profile.example.com").exit_code == 0
    acme_home.verified("web", "plain-profile.example.com")
    assert "profile" not in ari.log.new_orders[-1]
