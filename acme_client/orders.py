"""One order from newOrder (or a resumed order URL) to the downloaded chain (RFC 8555 7.4)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from certman.acme_client.client import AcmeClient
from certman.acme_client.polling import wait_for
from certman.acme_client.problems import ProblemError
from certman.acme_client.resources import AuthorizationState, ChallengeState, OrderState
from certman.acme_client.solvers.contract import ChallengeRequest, ChallengeSolver

from certman.contracts.issuer import IssueRequest
from certman.errors import IssuanceError

log = logging.getLogger("certman.acme")

# RFC 9773 section 5: a server that cannot honour "replaces" refuses the order; the client
# may then order without it (the replacement just is not linked to its predecessor).
_REPLACES_REFUSED = frozenset({"alreadyReplaced", "malformed", "conflict"})


@dataclass(frozen=True, kw_only=True)
class OrderPlan:
    """What to order and how: the request, the solver, and how long to wait for the server."""

    request: IssueRequest
    solver: ChallengeSolver
    challenge: str
    replaces: str | None
    profile: str | None
    timeout: float
    sleep: Callable[[float], None] = time.sleep


def obtain(client: AcmeClient, plan: OrderPlan) -> tuple[OrderState, str]:
    """Return the valid order and its PEM chain (leaf first)."""
    deadline = time.monotonic() + plan.timeout
    order = place_or_resume(client, plan)
    if order.status == "pending":
        authorize(client, order, plan, deadline)
        # RFC 8555 section 7.1.6: once every authorization is valid the order becomes ready.
        order = _wait(client, order, {"pending"}, deadline, plan, "The order")
    if order.status == "ready":
        order = client.finalize(order, plan.request.csr_pem)
    order = _wait(client, order, {"ready", "processing"}, deadline, plan, "Issuance")
    if order.status != "valid" or not order.certificate:
        names = ", ".join(plan.request.identifiers)
        if order.error is not None:  # RFC 8555 section 7.1.3: why the order is invalid
            raise ProblemError(
                f"The ACME server did not issue the certificate for {names}: "
                f"{order.error.describe()}.",
                problem=order.error,
            )
        raise IssuanceError(
            f"The ACME server did not issue the certificate for {names}: "
            f"the order is {order.status}."
        )
    return order, client.certificate(order.certificate)


def place_or_resume(client: AcmeClient, plan: OrderPlan) -> OrderState:
    """Resume ``request.order_url`` while the server still offers it, else place a new order.

    The new order's URL goes to ``request.checkpoint`` before anything else happens
    (DESIGN.md rule 2), so that a crash from here on resumes this very order.
    """
    request = plan.request
    if request.order_url:
        resumed = _resumable(client, request)
        if resumed is not None:
            return resumed
    try:
        order = client.new_order(request.identifiers, replaces=plan.replaces, profile=plan.profile)
    except ProblemError as error:
        if plan.replaces is None or error.code not in _REPLACES_REFUSED:
            raise
        log.warning(
            "the server refused replaces=%s (%s); ordering without it", plan.replaces, error
        )
        order = client.new_order(request.identifiers, replaces=None, profile=plan.profile)
    if request.checkpoint is not None:
        request.checkpoint(order.url)
    return order


def _resumable(client: AcmeClient, request: IssueRequest) -> OrderState | None:
    assert request.order_url
    try:
        order = client.order(request.order_url)
    except ProblemError as error:  # gone (404), expired, or not ours any more
        log.info("order %s cannot be resumed (%s); placing a new one", request.order_url, error)
        return None
    wanted = sorted(i.lower() for i in request.identifiers)
    if order.status == "invalid" or sorted(i.lower() for i in order.identifiers) != wanted:
        log.info("order %s is %s; placing a new one", order.url, order.status)
        return None
    return order


def authorize(client: AcmeClient, order: OrderState, plan: OrderPlan, deadline: float) -> None:
    """Satisfy every pending authorization; already valid ones are skipped (RFC 8555 7.1.4).

    The solver's cleanup always runs, after success and after any failure.
    """
    todo: list[tuple[AuthorizationState, ChallengeState]] = []
    for url in order.authorizations:
        authz = client.authorization(url)
        if authz.status == "valid":
            continue
        if authz.status != "pending":
            raise IssuanceError(
                f"The authorization for {authz.name} is {authz.status}; the order cannot "
                "succeed. certman places a new order on the next attempt."
            )
        todo.append((authz, _pick(authz, plan.challenge)))
    if not todo:
        return
    requests: list[ChallengeRequest] = [client.challenge_request(a, c) for a, c in todo]
    try:
        plan.solver.perform(requests)
        for _, challenge in todo:
            if challenge.status == "pending":
                client.answer(challenge)
        failed = []
        for authz, _ in todo:
            final = _wait_authz(client, authz, deadline, plan)
            if final.status != "valid":
                failed.append(final)
        if failed:
            raise IssuanceError(
                "Validation failed: " + "; ".join(_why(a, plan.challenge) for a in failed) + "."
            )
    finally:
        try:
            plan.solver.cleanup(requests)
        except Exception as error:  # never hide the primary error; say what was left
            log.warning("challenge cleanup failed, remove it by hand: %s", error)


def _pick(authz: AuthorizationState, kind: str) -> ChallengeState:
    for challenge in authz.challenges:
        if challenge.type == kind:
            return challenge
    offered = ", ".join(c.type for c in authz.challenges) or "none"
    raise IssuanceError(
        f"The ACME server offers no {kind} challenge for {authz.name} (offered: {offered}); "
        "wildcard names need dns-01, IP addresses need http-01."
    )


def _why(authz: AuthorizationState, kind: str) -> str:
    errors = [c.error for c in authz.challenges if c.type == kind and c.error]
    errors = errors or [c.error for c in authz.challenges if c.error]
    return f"{authz.name} ({kind}): " + (
        errors[0].describe() if errors else f"authorization {authz.status}"
    )


def _wait_authz(
    client: AcmeClient, authz: AuthorizationState, deadline: float, plan: OrderPlan
) -> AuthorizationState:
    return wait_for(
        lambda: client.authorization(authz.url),
        settled=lambda a: a.status != "pending",
        retry_after=lambda a: a.retry_after,
        deadline=deadline,
        what=f"Validation of {authz.name}",
        now=client.where.now,
        sleep=plan.sleep,
    )


def _wait(
    client: AcmeClient,
    order: OrderState,
    waiting: set[str],
    deadline: float,
    plan: OrderPlan,
    what: str,
) -> OrderState:
    if order.status not in waiting:
        return order
    return wait_for(
        lambda: client.order(order.url),
        settled=lambda o: o.status not in waiting,
        retry_after=lambda o: o.retry_after,
        deadline=deadline,
        what=f"{what} ({order.url})",
        now=client.where.now,
        sleep=plan.sleep,
    )
