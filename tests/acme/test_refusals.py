"""Every refusal gets a clear error and the right exit code, and leaves nothing half-done."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certman.acme_client.problems import Where, translate
from sqlmodel import select

from certman.errors import ConfigError, IssuanceError, PolicyError
from certman.inventory.tables import AcmeAccount
from tests.acme.ari_server import AriServer, Canned
from tests.acme.conftest import BLOCKED, AcmeHome
from tests.components.pebble import port_is_free

RATE_LIMITED = {
    "type": "urn:ietf:params:acme:error:rateLimited",
    "detail": "too many certificates for this name",
}


def test_an_unreachable_directory_names_the_url_and_plans_nothing(
    acme_home: AcmeHome, other_port: int
) -> None:
    url = f"https://127.0.0.1:{other_port}/dir"
    acme_home.configure(directory=url)
    result = acme_home.issue("web", "down.example.com")
    assert result.exit_code == 1
    assert f"The ACME server {url} is unreachable" in result.stderr
    assert "directory in [issuers.pebble]" in result.stderr
    assert acme_home.certificate("web") is None


def test_untrusted_tls_names_ca_bundle_and_plans_nothing(acme_home: AcmeHome) -> None:
    acme_home.configure(ca_bundle="")  # the system store does not trust Pebble's TLS CA
    result = acme_home.issue("web", "tls.example.com")
    assert result.exit_code == 2
    assert f"TLS to the ACME server {acme_home.pebble.directory_url} failed" in result.stderr
    assert "set ca_bundle in [issuers.pebble]" in result.stderr
    assert acme_home.certificate("web") is None


def test_a_url_that_is_not_an_acme_directory_names_the_key(acme_home: AcmeHome) -> None:
    pebble = acme_home.pebble
    for url, detail in [
        (pebble.directory_url.replace("/dir", "/no-such-dir"), "it answered HTTP 404"),
        (f"{pebble.management_url}/roots/0", "its answer is not JSON"),  # a PEM body
    ]:
        acme_home.config_path.write_text(acme_home.config_path.read_text().split("[issuers")[0])
        acme_home.configure(directory=url)
        result = acme_home.issue("web", "not-a-directory.example.com")
        assert result.exit_code == 2, result.stderr
        assert f"{url} is not an ACME directory ({detail}" in result.stderr
        assert f"set issuers.pebble.directory in {acme_home.config_path}" in result.stderr
        assert "Traceback" not in result.stderr
        assert acme_home.certificate("web") is None


def test_a_blocklisted_identifier_is_a_policy_refusal(acme_home: AcmeHome) -> None:
    acme_home.configure()
    result = acme_home.issue("web", f"www.{BLOCKED}")
    assert result.exit_code == 2
    assert "urn:ietf:params:acme:error:rejectedIdentifier" in result.stderr
    assert BLOCKED in result.stderr
    (rev,) = acme_home.revisions("web")
    assert rev.state == "failed" and rev.certificate_pem is None
    assert port_is_free(acme_home.pebble.http_port)


def test_rate_limited_is_retryable_and_its_retry_after_is_honoured(
    acme_home: AcmeHome, ari: AriServer
) -> None:
    acme_home.configure(directory=ari.directory_url)
    ari.canned["/order-plz"] = Canned(status=429, body=RATE_LIMITED, headers={"Retry-After": "600"})
    before = datetime.now(UTC)
    result = acme_home.issue("web", "busy.example.com")
    assert result.exit_code == 1
    assert "try again later" in result.stderr and "rateLimited" in result.stderr
    assert "too many certificates for this name" in result.stderr
    (rev,) = acme_home.revisions("web")
    assert rev.state == "key_sealed", "a retryable failure keeps the revision in flight"
    assert rev.retry_after is not None and rev.retry_after >= before + timedelta(seconds=590)
    cert = acme_home.certificate("web")
    assert cert is not None and cert.next_attempt_at is not None
    assert cert.next_attempt_at >= rev.retry_after
    # A later attempt does not even ask the server before Retry-After has passed.
    orders_before = len(ari.log.new_orders)
    again = acme_home.issue("web", "busy.example.com")
    assert again.exit_code == 1 and "asked certman to wait until" in again.stderr
    assert len(ari.log.new_orders) == orders_before
    # rateLimited is about these names: the issuer's other certificates go on meanwhile.
    assert account_retry_after(acme_home) is None
    other = acme_home.issue("other", "not-busy.example.com")
    assert other.exit_code == 0, other.stderr
    acme_home.verified("other", "not-busy.example.com")


def account_retry_after(acme_home: AcmeHome) -> datetime | None:
    rt = acme_home.runtime()
    with rt.session() as session:
        account = session.exec(select(AcmeAccount)).one()
    rt.engine.dispose()
    return account.retry_after


def test_a_server_pause_holds_every_certificate_of_the_issuer(
    acme_home: AcmeHome, ari: AriServer
) -> None:
    acme_home.configure(directory=ari.directory_url)
    ari.canned["/order-plz"] = Canned(
        status=503,
        body={"type": "urn:ietf:params:acme:error:serverInternal", "detail": "maintenance"},
        headers={"Retry-After": "900"},
    )
    before = datetime.now(UTC)
    assert acme_home.issue("web", "paused.example.com").exit_code == 1
    paused = account_retry_after(acme_home)
    assert paused is not None and paused >= before + timedelta(seconds=890)
    orders_before = len(ari.log.new_orders)
    other = acme_home.issue("other", "paused-too.example.com")
    assert other.exit_code == 1 and "asked certman to wait until" in other.stderr
    assert acme_home.certificate("other") is None, "refused by the precheck: nothing planned"
    assert len(ari.log.new_orders) == orders_before


def test_a_later_answer_never_shortens_the_stored_pause(acme_home: AcmeHome) -> None:
    from certman.acme_client.issuer import AcmeIssuer

    acme_home.configure()
    assert acme_home.issue("web", "pause-kept.example.com").exit_code == 0
    issuer = acme_home.runtime().issuer("pebble")
    assert isinstance(issuer, AcmeIssuer)
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    issuer.account.record_backoff(soon + timedelta(hours=1))
    issuer.account.record_backoff(None)  # a 5xx without Retry-After
    issuer.account.record_backoff(soon)  # an earlier Retry-After
    assert account_retry_after(acme_home) == soon + timedelta(hours=1)
    issuer.account.record_backoff(soon + timedelta(hours=2))
    assert account_retry_after(acme_home) == soon + timedelta(hours=2)


def test_a_server_error_is_retryable(acme_home: AcmeHome, ari: AriServer) -> None:
    acme_home.configure(directory=ari.directory_url)
    ari.canned["/order-plz"] = Canned(
        status=503,
        body={"type": "urn:ietf:params:acme:error:serverInternal", "detail": "maintenance"},
    )
    result = acme_home.issue("web", "down.example.com")
    assert result.exit_code == 1 and "maintenance" in result.stderr
    (rev,) = acme_home.revisions("web")
    assert rev.state == "key_sealed"
    # No Retry-After: the lifecycle's own back-off applies; an operator may retry at once.
    resumed = acme_home.issue("web", "down.example.com")
    assert resumed.exit_code == 0, resumed.stderr
    assert "Resuming" in resumed.stderr
    acme_home.verified("web", "down.example.com")


def where() -> Where:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    return Where(
        issuer="le", directory="https://acme.test/dir", config_path="/c.toml", now=lambda: now
    )


def test_translate_keeps_the_problem_type_and_detail() -> None:
    from acme import messages

    problem = messages.Error.from_json(
        {"type": "urn:ietf:params:acme:error:badCSR", "detail": "key too small"}
    )
    error = translate(problem, where(), "finalizing the order")
    assert isinstance(error, IssuanceError) and not error.retryable
    assert "urn:ietf:params:acme:error:badCSR: key too small" in error.message


def test_translate_rate_limited_without_retry_after_backs_off_an_hour() -> None:
    from acme import messages

    problem = messages.Error.from_json({"type": "urn:ietf:params:acme:error:rateLimited"})
    error = translate(problem, where(), "placing the order")
    assert error.retryable and error.retry_after == datetime(2030, 1, 1, 1, tzinfo=UTC)


def test_translate_honours_an_http_date_retry_after() -> None:
    from acme import messages

    problem = messages.Error.from_json({"type": "urn:ietf:params:acme:error:rateLimited"})
    problem.http_status = 429
    problem.retry_after_header = "Tue, 01 Jan 2030 00:10:00 GMT"
    error = translate(problem, where(), "placing the order")
    assert error.retry_after == datetime(2030, 1, 1, 0, 10, tzinfo=UTC)


def test_translate_rejected_identifier_is_a_policy_error() -> None:
    from acme import messages

    problem = messages.Error.from_json(
        {"type": "urn:ietf:params:acme:error:rejectedIdentifier", "detail": "blocked"}
    )
    assert isinstance(translate(problem, where(), "placing the order"), PolicyError)


def test_translate_ssl_errors_point_at_ca_bundle() -> None:
    import requests

    error = translate(requests.exceptions.SSLError("bad cert"), where(), "reading the directory")
    assert isinstance(error, ConfigError)
    assert "https://acme.test/dir" in error.message and "ca_bundle" in error.message


def test_a_directory_without_new_order_is_not_an_acme_directory() -> None:
    from certman.acme_client.problems import directory_problem

    error = directory_problem(KeyError("newOrder"), where())
    assert isinstance(error, ConfigError) and error.exit_code == 2
    assert "its answer has no newOrder URL" in error.message
    assert "set issuers.le.directory in /c.toml" in error.message


def test_an_unreachable_directory_stays_a_retryable_failure() -> None:
    import requests
    from certman.acme_client.problems import directory_problem

    error = directory_problem(requests.exceptions.ConnectionError("refused"), where())
    assert error.retryable and not isinstance(error, ConfigError)
