"""The pkcs11 key wrapper against a real SoftHSM2 token."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from certman.contracts.key_wrapper import KeyWrapper, SupportsRewrap
from certman.errors import ConfigError, KeyWrapError
from certman.keywrap.pkcs11 import Pkcs11KeyWrapper, key_uri, parse_key_uri
from certman.keywrap.pkcs11_token import Pkcs11Token, SealedForAnotherContext
from certman.models import EncryptionContext
from tests.components.softhsm import SoftHsm

from .conftest import OTHER_TOKEN, TOKEN

CONTEXT = EncryptionContext(certificate="web", revision=1, purpose="leaf-key")
SECRET = b"-----not a real key, but secret bytes-----"


def make_wrapper(softhsm: SoftHsm, key_label: str, token: str = TOKEN) -> Pkcs11KeyWrapper:
    wrapper = Pkcs11KeyWrapper(
        token=Pkcs11Token(module=str(softhsm.module), token_label=token, pin_env="CERTMAN_HSM_PIN"),
        key_label=key_label,
    )
    wrapper.ensure_key()
    return wrapper


@pytest.fixture
def wrapper(softhsm: SoftHsm, hsm_pin: str, key_label: str) -> Pkcs11KeyWrapper:
    return make_wrapper(softhsm, key_label)


def test_implements_the_key_wrapper_contracts(wrapper: Pkcs11KeyWrapper) -> None:
    assert isinstance(wrapper, KeyWrapper)
    assert isinstance(wrapper, SupportsRewrap)


def test_the_hsm_itself_binds_the_context(wrapper: Pkcs11KeyWrapper) -> None:
    """The data key's HSM-side AAD is the context: it alone refuses another context."""
    sealed = wrapper.wrap(SECRET, CONTEXT)
    other = EncryptionContext(certificate="api", revision=1, purpose="leaf-key")

    assert wrapper.token.decrypt(wrapper.key_label, sealed.encrypted_data_key, CONTEXT.aad())
    with pytest.raises(SealedForAnotherContext):
        wrapper.token.decrypt(wrapper.key_label, sealed.encrypted_data_key, other.aad())


def test_the_wrapping_key_cannot_be_read_out_of_the_token(wrapper: Pkcs11KeyWrapper) -> None:
    from pkcs11 import Attribute

    key = wrapper.token._with_key(wrapper.key_label, lambda k: k)
    assert key[Attribute.SENSITIVE] is True
    assert key[Attribute.EXTRACTABLE] is False
    assert key[Attribute.TOKEN] is True


def test_ensure_key_creates_once(softhsm: SoftHsm, hsm_pin: str, key_label: str) -> None:
    token = Pkcs11Token(module=str(softhsm.module), token_label=TOKEN, pin_env="CERTMAN_HSM_PIN")
    wrapper = Pkcs11KeyWrapper(token=token, key_label=key_label)

    assert not token.has_key(key_label)
    assert wrapper.ensure_key() is True
    assert wrapper.ensure_key() is False
    assert token.has_key(key_label)


def test_a_missing_wrapping_key_names_the_label_and_the_fix(
    softhsm: SoftHsm, hsm_pin: str, key_label: str
) -> None:
    token = Pkcs11Token(module=str(softhsm.module), token_label=TOKEN, pin_env="CERTMAN_HSM_PIN")
    wrapper = Pkcs11KeyWrapper(token=token, key_label=key_label)

    with pytest.raises(KeyWrapError, match=f"no AES key labelled '{key_label}'.*certman init"):
        wrapper.wrap(SECRET, CONTEXT)


def test_an_unknown_token_is_a_config_error(softhsm: SoftHsm, hsm_pin: str) -> None:
    token = Pkcs11Token(module=str(softhsm.module), token_label="nope", pin_env="CERTMAN_HSM_PIN")

    with pytest.raises(ConfigError, match=r"No PKCS#11 token labelled 'nope'.*token_label"):
        token.has_key("x")


def test_an_unset_pin_variable_is_a_config_error(
    softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_PIN_VAR", raising=False)
    token = Pkcs11Token(
        module=str(softhsm.module), token_label="unopened", pin_env="NO_SUCH_PIN_VAR"
    )

    with pytest.raises(ConfigError, match=r"'NO_SUCH_PIN_VAR'.*not set"):
        token.has_key("x")


def test_a_missing_module_is_a_config_error(tmp_path: object) -> None:
    token = Pkcs11Token(module="/nonexistent/libhsm.so", token_label=TOKEN, pin_env="PATH")

    with pytest.raises(ConfigError, match=r"/nonexistent/libhsm.so.*does not exist"):
        token.has_key("x")


def test_a_record_from_another_token_names_both(
    softhsm: SoftHsm, wrapper: Pkcs11KeyWrapper
) -> None:
    sealed = wrapper.wrap(SECRET, CONTEXT)
    other = Pkcs11KeyWrapper(
        token=Pkcs11Token(module=str(softhsm.module), token_label=OTHER_TOKEN, pin_env="OTHER_PIN"),
        key_label=wrapper.key_label,
    )

    with pytest.raises(KeyWrapError, match=f"token '{TOKEN}'.*token_label is '{OTHER_TOKEN}'"):
        other.unwrap(sealed, CONTEXT)


def test_threads_share_the_token_safely(wrapper: Pkcs11KeyWrapper) -> None:
    """SoftHSM2 crashes on concurrent calls: the wrapper serialises them."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        context = EncryptionContext(certificate=f"c{n}", revision=1, purpose="leaf-key")
        try:
            for _ in range(25):
                assert wrapper.unwrap(wrapper.wrap(SECRET, context), context) == SECRET
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_preflight_reports_a_working_key(wrapper: Pkcs11KeyWrapper) -> None:
    result = wrapper.preflight(datetime.now(UTC))

    assert result.ok
    assert result.checks[0][0] == "hsm key"


def test_preflight_reports_a_missing_key(softhsm: SoftHsm, hsm_pin: str, key_label: str) -> None:
    token = Pkcs11Token(module=str(softhsm.module), token_label=TOKEN, pin_env="CERTMAN_HSM_PIN")
    result = Pkcs11KeyWrapper(token=token, key_label=key_label).preflight(datetime.now(UTC))

    assert not result.ok
    assert "no AES key labelled" in result.checks[0][2]


def test_key_uris_round_trip_odd_labels() -> None:
    uri = key_uri("my token;x", "key/1=a")

    assert uri.startswith("pkcs11:token=my%20token%3Bx;object=key%2F1%3Da;")
    assert parse_key_uri(uri) == ("my token;x", "key/1=a")
    with pytest.raises(KeyWrapError):
        parse_key_uri("local:v1")
