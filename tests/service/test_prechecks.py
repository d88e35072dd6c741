"""What the lifecycle refuses before it plans or orders: deleted names, early retries, keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlmodel import select

from certman.clock import FrozenClock
from certman.contracts.archive import ArchivePutRequest, ArchiveRef, SupportsNameListing
from certman.errors import AlreadyExistsError, ArchiveError, IssuanceError, KeyWrapError
from certman.inventory.tables import AuditEvent, Revision
from certman.lifecycle.states import RevisionState
from certman.models import EncryptionContext, WrappedKey
from certman.service.deletion import delete_certificate, refuse_archived_names
from certman.service.lifecycle import Lifecycle
from certman.service.runtime import Runtime
from tests.service.test_lifecycle import certificate, fake, issue, past_renewal, revisions, spec

# --- a new name whose deleted predecessor's bundles are still archived ----------------------


def test_plan_refuses_a_deleted_name_whose_bundles_are_archived(frozen_runtime: Runtime) -> None:
    issue(frozen_runtime)
    delete_certificate(frozen_runtime, "web")
    bundles = frozen_runtime.archive.list("web/")
    with pytest.raises(AlreadyExistsError, match="archive still holds bundles"):
        Lifecycle(frozen_runtime).plan(spec())
    with frozen_runtime.session() as session:
        assert session.exec(select(AuditEvent.action)).all()[-1] == "certificate.delete"
    assert frozen_runtime.archive.list("web/") == bundles
    Lifecycle(frozen_runtime).plan(spec("web2"))  # another name goes ahead


class ListingStore:
    """An archive that answers for many names in one pass, and counts how it is asked."""

    store_type = "listing"

    def __init__(self, held: set[str]) -> None:
        self.held = held
        self.asked: list[tuple[str, ...]] = []

    def put(self, request: ArchivePutRequest) -> ArchiveRef:
        raise AssertionError("nothing is stored by a refusal check")

    def get(self, request: object) -> object:
        raise AssertionError("nothing is read by a refusal check")

    def list(self, prefix: str = "") -> list[str]:
        raise AssertionError("a store that lists names in one pass is never listed per name")

    def names_with_bundles(self, names: Sequence[str]) -> set[str]:
        self.asked.append(tuple(names))
        return self.held & set(names)


class PlainStore:
    """An archive with only the ArchiveStore contract."""

    store_type = "plain"

    def __init__(self, locations: list[str]) -> None:
        self.locations = locations
        self.prefixes: list[str] = []

    def list(self, prefix: str = "") -> list[str]:
        self.prefixes.append(prefix)
        return [loc for loc in self.locations if loc.startswith(prefix)]


def with_archive(rt: Runtime, store: object) -> Runtime:
    rt.__dict__["archive"] = store  # the runtime's cached archive store
    return rt


def test_a_store_that_lists_names_is_asked_once_for_a_thousand(frozen_runtime: Runtime) -> None:
    store = ListingStore(held=set())
    assert isinstance(store, SupportsNameListing)
    names = [f"n{i:04d}" for i in range(1000)]
    refuse_archived_names(with_archive(frozen_runtime, store), names)
    assert store.asked == [tuple(names)]
    store.held = {"n0500"}
    with pytest.raises(AlreadyExistsError, match="'n0500'"):
        refuse_archived_names(frozen_runtime, names)


def test_a_store_without_the_capability_is_listed_per_name(frozen_runtime: Runtime) -> None:
    store = PlainStore(["webby/000001.bundle"])
    refuse_archived_names(with_archive(frozen_runtime, store), ["web", "mail"])
    assert store.prefixes == ["web/", "mail/"]  # "webby" is another name
    with pytest.raises(AlreadyExistsError, match="'webby'"):
        refuse_archived_names(frozen_runtime, ["mail", "webby"])


def test_an_archive_that_cannot_be_listed_refuses_nothing_up_front(
    frozen_runtime: Runtime,
) -> None:
    class Unlistable(ListingStore):
        def names_with_bundles(self, names: Sequence[str]) -> set[str]:
            self.asked.append(tuple(names))
            raise ArchiveError("The archive cannot be listed now.")

    store = Unlistable(held=set())
    refuse_archived_names(with_archive(frozen_runtime, store), ["a", "b"])
    assert store.asked == [("a", "b")]  # asked once, not again per name


# --- Retry-After: no new order before it passes, for every issuer ---------------------------


def test_no_order_is_placed_before_the_issuers_retry_after(
    frozen_runtime: Runtime, clock: FrozenClock
) -> None:
    until = clock.now() + timedelta(hours=6)
    issuer = fake(frozen_runtime, failure="retryable", retry_after=until)
    lifecycle = Lifecycle(frozen_runtime)
    lifecycle.plan(spec(issuer="fake"))
    with pytest.raises(IssuanceError):
        lifecycle.advance("web")
    issuer.failure = None  # the issuer would answer now; certman must not ask it yet
    for attempt in (lambda: lifecycle.advance("web"), lambda: lifecycle.renew("web")):
        with pytest.raises(IssuanceError, match="asked certman to wait until") as refused:
            attempt()
        assert refused.value.retryable and refused.value.retry_after == until
    assert len(issuer.requests) == 1
    (rev,) = revisions(frozen_runtime, "web")
    assert (rev.state, rev.retry_after) == (RevisionState.KEY_SEALED, until)
    assert certificate(frozen_runtime, "web").next_attempt_at == until
    clock.set(until)
    assert lifecycle.renew("web").state == RevisionState.ACTIVE
    assert len(issuer.requests) == 2


# --- the master key: checked once per renewal -----------------------------------------------


def _count_unwraps(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    wrapper = rt.key_wrapper
    unwrap = wrapper.unwrap
    opened: list[tuple[str, int]] = []

    def counting(wrapped: WrappedKey, context: EncryptionContext) -> bytes:
        opened.append((context.certificate, context.revision))
        return unwrap(wrapped, context)

    monkeypatch.setattr(wrapper, "unwrap", counting)
    return opened


def test_a_renewal_with_a_new_key_checks_the_key_wrapper_with_a_probe_not_the_old_key(
    frozen_runtime: Runtime, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A renewal that generates a key needs the key wrapper, not the key it replaces: one
    probe sealed and unsealed proves the wrapper works; the walk does not check again."""
    lifecycle = issue(frozen_runtime)
    past_renewal(frozen_runtime, clock, "web")
    opened = _count_unwraps(frozen_runtime, monkeypatch)
    assert lifecycle.renew("web").revision == 2
    assert ("web", 1) not in opened
    assert opened.count(("certman-precheck", 0)) == 1


def test_a_renewal_that_reuses_the_key_unwraps_it_in_the_precheck(
    frozen_runtime: Runtime, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifecycle = issue(frozen_runtime, reuse_key=True)
    past_renewal(frozen_runtime, clock, "web")
    opened = _count_unwraps(frozen_runtime, monkeypatch)
    assert lifecycle.renew("web").revision == 2
    assert opened[0] == ("web", 1), "the precheck opens the key before anything is planned"
    assert ("certman-precheck", 0) not in opened


def _damage_sealed_key(rt: Runtime, name: str, number: int) -> None:
    import base64
    import json

    from tests.service.test_lifecycle import certificate as certificate_row

    cert_id = certificate_row(rt, name).id
    with rt.session() as session:
        rev = session.exec(
            select(Revision)
            .where(Revision.certificate_id == cert_id)
            .where(Revision.number == number)
        ).one()
        assert rev.sealed_key is not None
        doc = json.loads(rev.sealed_key)
        ct = bytearray(base64.b64decode(doc["ct"]))
        ct[0] ^= 0x01
        doc["ct"] = base64.b64encode(bytes(ct)).decode()
        rev.sealed_key = json.dumps(doc)
        session.add(rev)
        session.commit()


def test_a_forced_renewal_with_a_new_key_replaces_a_damaged_sealed_key(
    frozen_runtime: Runtime,
) -> None:
    lifecycle = issue(frozen_runtime)
    _damage_sealed_key(frozen_runtime, "web", 1)
    outcome = lifecycle.renew("web", force=True)
    assert (outcome.revision, outcome.state) == (2, RevisionState.ACTIVE)
    new = revisions(frozen_runtime, "web")[-1]
    assert new.sealed_key is not None
    frozen_runtime.key_wrapper.unwrap(
        WrappedKey.from_json(new.sealed_key),
        EncryptionContext(certificate="web", revision=2, purpose="private-key"),
    )


def test_a_renewal_that_reuses_a_damaged_sealed_key_is_refused_before_planning(
    frozen_runtime: Runtime,
) -> None:
    lifecycle = issue(frozen_runtime, reuse_key=True)
    _damage_sealed_key(frozen_runtime, "web", 1)
    with pytest.raises(KeyWrapError, match="reuses its key on renewal") as raised:
        lifecycle.renew("web", force=True)
    assert "revision 1 cannot be unsealed" in raised.value.message
    assert "keyCompromise" in raised.value.message
    assert [r.number for r in revisions(frozen_runtime, "web")] == [1], "nothing planned"
