"""Bulk issuance: the same lifecycle steps over many revisions, one commit per step per batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from certman.background import Background
from certman.config import Config
from certman.contracts import supports
from certman.contracts.archive import SupportsPutMany
from certman.contracts.issuer import SupportsKeyIssue
from certman.errors import AlreadyExistsError, CertmanError, ValidationError
from certman.inventory.audit import EventSpec, append_events
from certman.inventory.bulkwrite import insert_returning, update_by_id
from certman.inventory.checkpoints import Checkpoints, checkpoints_aside
from certman.inventory.tables import ManagedCertificate, Revision
from certman.lifecycle.states import RevisionState
from certman.service import steps
from certman.service.deletion import refuse_archived_names
from certman.service.leases import Lease, LeaseKeeper, fence, release_all, release_ids
from certman.service.lifecycle import IssueSpec, Lifecycle, apply_spec
from certman.service.runtime import Runtime

S = RevisionState
Progress = Callable[[int], None]


@dataclass
class BulkReport:
    issued: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    # Rows of an earlier run of the same input, already issued with the same settings.
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class BulkPlan:
    """What a bulk input asks for, against the inventory: new certificates, those an earlier
    run of the same input left unfinished (or whose first issuance failed), and those it
    already issued."""

    new: list[IssueSpec]
    unfinished: list[IssueSpec]
    done: list[str]

    def __len__(self) -> int:
        return len(self.new) + len(self.unfinished) + len(self.done)


def issue_many(
    rt: Runtime,
    specs: Sequence[IssueSpec] | BulkPlan,
    *,
    batch_size: int = 1000,
    progress: Progress | None = None,
    lease: Lease | None = None,
) -> BulkReport:
    """Issue every spec. Each step is persisted for the whole batch before the next starts,
    so the crash-safety rules hold exactly as for one certificate; a failure of one
    certificate is recorded (as `Lifecycle.record_failure` does) without stopping the rest.

    Every certificate is leased from the commit that creates it until its batch is done
    (certman.service.leases), so `renew --due` or the service never takes an issuance in
    flight for an interrupted one. Running the same input again finishes what a killed run
    left: certificates it issued with the same settings are skipped, unfinished ones are
    resumed, the rest issued.

    A batch costs a few fixed waits (its commits, the flush of its bundles, the audit
    anchor); 1,000 per batch measured ~5% faster than 500, with 1,000 keys in memory at most.
    """
    lifecycle = Lifecycle(rt, lease=lease)
    plan = specs if isinstance(specs, BulkPlan) else validate_all(rt, specs)
    report = BulkReport(skipped=list(plan.done))
    if progress is not None and plan.done:
        progress(len(plan.done))
    # Batching needs an in-process issuer; remote ones (ACME) take the one-by-one path, which
    # persists each order URL the moment it exists.
    local = [s for s in plan.new if supports(rt.issuer(s.issuer), SupportsKeyIssue)]
    one_by_one = [s for s in plan.new if not supports(rt.issuer(s.issuer), SupportsKeyIssue)]
    try:
        with LeaseKeeper(rt, lifecycle.holder):
            with rt.engine.connect() as connection, checkpoints_aside(connection) as checkpoints:
                for start in range(0, len(local), batch_size):
                    chunk = local[start : start + batch_size]
                    _issue_batch(rt, lifecycle, chunk, report, connection, checkpoints)
                    if progress is not None:
                        progress(len(chunk))
            for spec in [*plan.unfinished, *one_by_one]:
                try:
                    lifecycle.issue(spec)
                    report.issued.append(spec.name)
                except CertmanError as error:
                    report.failed[spec.name] = error.message
                if progress is not None:
                    progress(1)
    except BaseException:
        release_all(rt, lifecycle.holder.holder)
        raise
    if report.failed:  # a batch gives back its leases as it completes; not those of failures
        release_all(rt, lifecycle.holder.holder)
    return report


class Record(SimpleNamespace):
    """A row as plain attributes: the steps read and set columns on it like on a table model,
    without the ORM's per-attribute bookkeeping (the bulk path writes with executemany)."""


def _defaults(table: Any) -> dict[str, Any]:
    values = {}
    for column in table.columns:
        default = column.default.arg if column.default is not None else None
        values[column.name] = default if not callable(default) else None
    return values


def _rows(records: Sequence[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """INSERT parameters: the records' attributes, and the columns some record sets (the
    rest are NULL anyway)."""
    rows = [vars(r) for r in records]
    # Set in the first record, or else in any (only those still NULL there are looked for).
    columns = [
        k
        for k, v in rows[0].items()
        if k != "id" and (v is not None or any(row[k] is not None for row in rows))
    ]
    return rows, columns


def validate_all(rt: Runtime, specs: Sequence[IssueSpec]) -> BulkPlan:
    """Check every spec before anything is written; the normalised specs come back, sorted
    into new ones, ones an earlier run of the same input left to finish, and done ones.

    A name that exists with other settings (or that certman did not issue) is refused.
    """
    lifecycle = Lifecycle(rt)
    validated = [lifecycle.validate(spec) for spec in specs]
    names = [s.name for s in validated]
    if len(set(names)) != len(names):
        raise ValidationError(
            "A certificate name appears twice in the bulk input; names must be unique."
        )
    existing: dict[str, tuple[ManagedCertificate, bool]] = {}
    with rt.session() as session:
        for start in range(0, len(names), 500):
            existing.update(_existing(session, names[start : start + 500]))
    new, unfinished, done = [], [], []
    for spec in validated:
        found = existing.get(spec.name)
        if found is None:
            new.append(spec)
            continue
        cert, in_flight = found
        if not _same_settings(cert, spec):
            raise AlreadyExistsError(
                f"Certificate {spec.name!r} already exists with other settings; bulk issuance "
                "only creates new certificates or finishes an earlier run of the same input "
                "(use `certman renew`, or pick another name)."
            )
        if in_flight or not cert.current_revision:
            unfinished.append(spec)
        else:
            done.append(spec.name)
    refuse_archived_names(rt, [s.name for s in new])
    return BulkPlan(new=new, unfinished=unfinished, done=done)


def _existing(session: Session, names: Sequence[str]) -> dict[str, tuple[ManagedCertificate, bool]]:
    """The certificates of ``names`` that exist, each with whether its latest revision is in
    flight."""
    in_flight = [s.value for s in S if s.in_flight]
    rows = session.exec(
        select(ManagedCertificate, Revision.state)
        .outerjoin(
            Revision,
            (col(Revision.certificate_id) == col(ManagedCertificate.id))
            & (col(Revision.number) == col(ManagedCertificate.latest_revision)),
        )
        .where(col(ManagedCertificate.name).in_(names))
    ).all()
    return {cert.name: (cert, state in in_flight) for cert, state in rows}


def _same_settings(cert: ManagedCertificate, spec: IssueSpec) -> bool:
    """Whether ``cert`` is what ``spec`` asks for (so a second run of the input may finish it)."""
    probe = Record(**_defaults(ManagedCertificate.__table__))  # type: ignore[attr-defined]
    apply_spec(probe, spec)  # type: ignore[arg-type]
    fields = (
        "source",
        "issuer",
        "domains",
        "key_type",
        "validity_seconds",
        "renew_before_seconds",
        "reuse_key",
        "targets",
    )
    return all(getattr(cert, f) == getattr(probe, f) for f in fields)


def _refuse_existing(session: Session, names: Sequence[str]) -> None:
    existing = session.exec(
        select(ManagedCertificate.name).where(col(ManagedCertificate.name).in_(names))
    ).first()
    if existing:
        raise AlreadyExistsError(
            f"Certificate {existing!r} already exists; bulk issuance only creates new "
            "certificates (use `certman renew`)."
        )


def _issue_batch(
    rt: Runtime,
    lifecycle: Lifecycle,
    specs: Sequence[IssueSpec],
    report: BulkReport,
    connection: Connection,
    checkpoints: Checkpoints,
) -> None:
    """One batch, in three commits: sealed keys, certificates, then archived and active.

    Every revision row is inserted with its key already sealed (a key that exists only in
    memory when a crash comes is simply lost, never used), and the archive and activation
    of a certificate without targets share one commit: its bundle is on disk before that
    commit refers to it, and nothing outside the inventory happens in between.
    """
    now = rt.clock.now()
    lease = lifecycle.holder
    with rt.session(bind=connection) as session:
        ids: list[int] = []

        def commit() -> None:
            fence(session, ids, lease, rt.clock.now())  # every row still ours, or LeaseLost
            session.commit()
            checkpoints.after_commit()

        works = _plan(specs, now, lease)
        live, unsealed = _attempt(rt, steps.seal_key, works)
        try:
            _insert(session, works)
        except IntegrityError:
            # A name taken since validate_all looked (by another process): the unique
            # constraint refused the batch, nothing is written; say which name.
            session.rollback()
            _refuse_existing(session, [s.name for s in specs])
            raise
        ids.extend(cast(int, w.cert.id) for w in works)
        commit()
        for work, error in unsealed:
            _fail(lifecycle, work, error, report)

        live = _run(rt, lifecycle, steps.issue, live, report)
        _save(session, Revision, [w.rev for w in live], _ISSUED)
        commit()
        live, flushing = _archive_all(rt, lifecycle, live, report)
        # A rollout acts outside the inventory: what it deploys is recorded as archived first.
        rolled_out = [w for w in live if steps.targets_of(w.cert)]
        if rolled_out:
            live = _flushed(flushing, session, lifecycle, live, report)
            flushing = None
            if live:
                _save(session, Revision, [w.rev for w in rolled_out], _ARCHIVED)
                commit()

        live = _run(rt, lifecycle, steps.deploy, live, report)
        live = _run(rt, lifecycle, steps.activate, live, report)
        done = rt.clock.now()
        for w in live:
            w.rev.updated_at = w.cert.updated_at = done
        _save(session, ManagedCertificate, [w.cert for w in live], _ACTIVATED_CERT)
        _save(session, Revision, [w.rev for w in live], _ACTIVATED_REV)
        append_events(
            session,
            done,
            [
                EventSpec(
                    action="certificate.issue",
                    subject=w.cert.name,
                    details={
                        "revision": 1,
                        "serial": w.rev.serial,
                        "issuer": w.cert.issuer,
                        "fingerprint_sha256": w.rev.fingerprint_sha256,
                        "bulk": True,
                    },
                )
                for w in live
            ],
        )
        # The bundles were flushing while this commit was prepared; it waits for them.
        live = _flushed(flushing, session, lifecycle, live, report)
        if live:
            fence(session, ids, lease, rt.clock.now())
            release_ids(session, ids, lease)  # the batch is done: its leases go with it
            session.commit()
            checkpoints.after_commit()
        report.issued.extend(w.cert.name for w in live)
        for w in works:
            w.key = None  # drop plaintext keys as soon as the batch is done


def _flushed(
    flushing: Background | None,
    session: Session,
    lifecycle: Lifecycle,
    works: list[steps.Work],
    report: BulkReport,
) -> list[steps.Work]:
    """``works`` once their bundles are durable; none if the flush failed, and then the
    batch's uncommitted writes are rolled back and every work is recorded as failed."""
    if flushing is None:
        return works
    try:
        flushing.wait()
    except CertmanError as error:
        session.rollback()
        for work in works:
            _fail(lifecycle, work, error, report)
        return []
    return works


def _plan(specs: Sequence[IssueSpec], now: datetime, lease: Lease) -> list[steps.Work]:
    """The certificate (leased) and first revision (planned) of each spec, as plain records."""
    cert_defaults = _defaults(ManagedCertificate.__table__)  # type: ignore[attr-defined]
    rev_defaults = _defaults(Revision.__table__)  # type: ignore[attr-defined]
    works = []
    for spec in specs:
        cert = Record(**cert_defaults)
        cert.name, cert.created_at, cert.updated_at = spec.name, now, now
        cert.claimed_by, cert.claimed_until = lease.holder, now + lease.duration
        apply_spec(cert, spec)  # type: ignore[arg-type]
        cert.latest_revision = 1
        rev = Record(**rev_defaults)
        # state: the column's default, planned; every later one goes through transition.
        rev.number, rev.reason = 1, "issue"
        rev.key_type, rev.created_at, rev.updated_at = cert.key_type, now, now
        works.append(steps.Work(cert=cert, rev=rev))  # type: ignore[arg-type]
    return works


def _insert(session: Session, works: Sequence[steps.Work]) -> None:
    """INSERT the certificates, then their revisions, and give the records their ids."""
    cert_table = ManagedCertificate.__table__  # type: ignore[attr-defined]
    rev_table = Revision.__table__  # type: ignore[attr-defined]
    rows, columns = _rows([w.cert for w in works])
    ids = dict(insert_returning(session, cert_table, rows, ("name", "id"), columns=columns))
    for w in works:
        w.cert.id = w.rev.certificate_id = ids[w.cert.name]
    rows, columns = _rows([w.rev for w in works])
    rev_ids = dict(
        insert_returning(session, rev_table, rows, ("certificate_id", "id"), columns=columns)
    )
    for w in works:
        w.rev.id = rev_ids[w.cert.id]


# The columns each step changes: only these are sent back.
_ISSUED = (
    "certificate_pem",
    "chain_pem",
    "serial",
    "fingerprint_sha256",
    "not_before",
    "not_after",
    "order_url",
    "state",
)
_ARCHIVED = ("archive_location", "archive_sha256", "archive_extra", "state")
_ACTIVATED_REV = (*_ARCHIVED, "error", "deploy_state", "updated_at")
_ACTIVATED_CERT = (
    "current_revision",
    "serial",
    "fingerprint_sha256",
    "not_before",
    "not_after",
    "renewal_due_at",
    "status",
    "failures",
    "next_attempt_at",
    "last_error",
    "acm_arn",
    "updated_at",
)


def _save(session: Session, model: Any, records: list[Any], columns: tuple[str, ...]) -> None:
    """Persist one step for the whole batch: one UPDATE sent with executemany."""
    update_by_id(session, model.__table__, [vars(r) for r in records], columns)


def _attempt(
    rt: Runtime, step: Callable[[Runtime, steps.Work], None], works: list[steps.Work]
) -> tuple[list[steps.Work], list[tuple[steps.Work, CertmanError]]]:
    """Run ``step`` on each work; the failures come back to be recorded once their rows exist."""
    survivors, failures = [], []
    for work in works:
        try:
            step(rt, work)
        except CertmanError as error:
            failures.append((work, error))
            continue
        survivors.append(work)
    return survivors, failures


def _run(
    rt: Runtime,
    lifecycle: Lifecycle,
    step: Callable[[Runtime, steps.Work], None],
    works: list[steps.Work],
    report: BulkReport,
) -> list[steps.Work]:
    survivors, failures = _attempt(rt, step, works)
    for work, error in failures:
        _fail(lifecycle, work, error, report)
    return survivors


def _archive_all(
    rt: Runtime, lifecycle: Lifecycle, works: list[steps.Work], report: BulkReport
) -> tuple[list[steps.Work], Background | None]:
    """One batched write for the whole chunk when the store supports it, flushed on a thread
    (wait for it before any commit that refers to the bundles)."""
    store = rt.archive
    if not supports(store, SupportsPutMany):
        return _run(rt, lifecycle, steps.archive, works, report), None
    batched = cast(SupportsPutMany, store)
    requests = [steps.archive_request(rt, w) for w in works]
    try:
        refs = batched.put_many(requests, flush=False)
    except CertmanError as error:
        for work in works:
            _fail(lifecycle, work, error, report)
        return [], None
    now = rt.clock.now()
    for work, ref in zip(works, refs, strict=True):
        steps.record_archive(work, ref, now)
    return works, Background(batched.flush, name="certman-archive-flush")


def _fail(lifecycle: Lifecycle, work: steps.Work, error: CertmanError, report: BulkReport) -> None:
    work.key = None
    report.failed[work.cert.name] = error.message
    lifecycle.record_failure(work.cert.name, work.rev.number, error)


def read_bulk_csv(
    config: Config, path: Path, *, issuer: str | None, validity: timedelta | None = None
) -> list[IssueSpec]:
    """Rows ``name,domains[,key_type,validity]``; a header row starting with "name" is skipped.

    ``validity`` is for rows without one (default: ``[defaults] validity``).
    """
    from certman.durations import parse_duration
    from certman.models import KeyType

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValidationError(f"Cannot read {path}: {e.strerror}.") from None
    except UnicodeDecodeError as e:
        raise ValidationError(
            f"{path} is not UTF-8 text (byte {e.start + 1} cannot be read); save it as UTF-8."
        ) from None
    specs = []
    for number, row in _csv_rows(path, text):
        if not row or not "".join(row).strip() or (number == 1 and row[0].strip() == "name"):
            continue
        if len(row) < 2:
            raise ValidationError(f"{path} line {number}: give at least name,domains.")
        if len(row) > 4:
            raise ValidationError(
                f"{path} line {number} has {len(row)} columns; give name,domains[,key_type,"
                "validity] (quote a field that holds a comma)."
            )
        where = f"{path} line {number}"
        specs.append(
            IssueSpec(
                name=row[0].strip(),
                domains=tuple(row[1].split()),
                issuer=issuer or str(config.get("defaults", "issuer")),
                key_type=KeyType.parse(row[2], field=f"key type ({where})")
                if len(row) > 2 and row[2].strip()
                else config.key_type("defaults", "key_type"),
                validity=parse_duration(row[3], field=f"validity ({where})")
                if len(row) > 3 and row[3].strip()
                else validity or config.duration("defaults", "validity") or timedelta(days=90),
                renew_before=config.duration("defaults", "renew_before"),
                reuse_key=bool(config.get("defaults", "reuse_key")),
            )
        )
    if not specs:
        raise ValidationError(f"{path} holds no certificate rows.")
    return specs


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each row; csv's errors (a field over csv.field_size_limit(),
    128 KiB by default; a NUL byte) refused naming the line."""
    import csv

    reader = csv.reader(text.splitlines())
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise ValidationError(
                f"{path} line {reader.line_num} cannot be read as CSV ({e}); "
                "give one row name,domains[,key_type,validity] per line."
            ) from None
        yield reader.line_num, row
