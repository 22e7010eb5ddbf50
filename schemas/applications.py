"""Conditional sharing as a workflow: applications (申请) and their approval (审批).

A department applies for a conditional entry, stating its purpose (用途), the items it
needs and for how long; the entry's provider reviews it and approves or rejects; an
approval can be revoked, and expires at the end of its validity. The state machine is
pure: :func:`transition` either returns the next state of an application or raises
:class:`IllegalTransition` naming what was wrong, and it is the only way state changes.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class State(str, Enum):
    submitted = "submitted"  # 已申请
    under_review = "under_review"  # 审核中
    approved = "approved"  # 已批准
    rejected = "rejected"  # 已驳回
    revoked = "revoked"  # 已撤销
    expired = "expired"  # 已过期


Action = Literal["apply", "review", "approve", "reject", "revoke", "expire"]

#: action → (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[State | None], State]] = {
    # a rejected, revoked or expired application may be filed again
    "apply": (frozenset({None, State.rejected, State.revoked, State.expired}), State.submitted),
    "review": (frozenset({State.submitted}), State.under_review),
    "approve": (frozenset({State.under_review}), State.approved),
    "reject": (frozenset({State.submitted, State.under_review}), State.rejected),
    "revoke": (frozenset({State.approved}), State.revoked),
    "expire": (frozenset({State.approved}), State.expired),
}
PROVIDER_ACTIONS = frozenset({"review", "approve", "reject", "revoke"})


class ControlEvent(BaseModel):
    """One message on a platform's control topic: an action on an application."""

    model_config = ConfigDict(extra="forbid")

    action: Action
    actor: str = Field(description="department taking the action")
    consumer: str = Field(description="the applying department")
    entry: str
    items: list[str] | None = Field(default=None, description="items applied for (apply); all when omitted")
    purpose: str = ""
    valid_for_s: float | None = Field(default=None, gt=0, description="validity of an approval, from its time")
    reason: str = ""
    at_ns: int = Field(description="when the action was taken, epoch ns")
    request_id: str = Field(default="", description="set by the sender; the router's verdict carries it back")

    @property
    def application(self) -> str:
        return f"{self.consumer}.{self.entry}"


class ControlVerdict(BaseModel):
    """The router's answer to one control event, on the platform's verdict topic.

    ``accepted`` with the application's new ``state``, or refused with the ``reason``
    (the :class:`IllegalTransition` message, or why the event could not be read).
    ``request_id`` is the event's, so a sender can wait for the answer to its own event.
    """

    model_config = ConfigDict(extra="forbid")

    request_id: str = ""
    action: str = Field(description="the event's action, '?' when it could not be read")
    actor: str = "?"
    application: str = Field(description="consumer.entry, '?' when it could not be read")
    accepted: bool
    state: str = Field(description="the application's state after the event; 'refused' when refused")
    reason: str = ""
    worker: str = Field(default="", description="the router worker that decided")
    at_ns: int = Field(description="when the router decided, epoch ns")


class Application(BaseModel):
    """The current state of one department's application for one entry."""

    model_config = ConfigDict(extra="forbid")

    id: str
    consumer: str
    entry: str
    items: list[str] | None = None
    purpose: str = ""
    state: State
    valid_until_ns: int | None = Field(default=None, description="approved until (epoch ns); None: no end")
    history: list[tuple[str, str, int]] = Field(default_factory=list, description="(action, actor, at_ns)")
    last_request_id: str = Field(default="", description="request id of the last event applied (a re-delivery of it is not applied twice)")

    def approved_at(self, now_ns: int) -> bool:
        return self.state is State.approved and (self.valid_until_ns is None or now_ns < self.valid_until_ns)


class IllegalTransition(ValueError):
    """An action that the workflow does not allow, with the reason."""


def transition(current: Application | None, event: ControlEvent, provider: str) -> Application:
    """The application after ``event``, or :class:`IllegalTransition`.

    ``provider`` is the entry's provider: only it may review, approve, reject or revoke;
    only the consumer itself may apply.
    """
    if event.action not in TRANSITIONS:
        raise IllegalTransition(f"unknown action {event.action!r}")
    sources, target = TRANSITIONS[event.action]
    state = current.state if current is not None else None
    if event.action == "apply" and event.actor != event.consumer:
        raise IllegalTransition(f"{event.actor!r} cannot apply on behalf of {event.consumer!r}")
    if event.action in PROVIDER_ACTIONS and event.actor != provider:
        raise IllegalTransition(f"only the provider {provider!r} of {event.entry!r} may {event.action}; {event.actor!r} tried")
    if event.action == "expire" and (
        event.actor != "platform" or current is None or current.valid_until_ns is None or event.at_ns < current.valid_until_ns
    ):
        raise IllegalTransition("only the platform marks an approval expired, and only once its validity has ended")
    if state not in sources:
        allowed = ", ".join(sorted(s.value if s else "(none)" for s in sources))
        raise IllegalTransition(
            f"cannot {event.action} application {event.application!r} in state {state.value if state else '(none)'}; allowed from: {allowed}"
        )
    if event.action == "apply":
        return Application(
            id=event.application,
            consumer=event.consumer,
            entry=event.entry,
            items=event.items,
            purpose=event.purpose,
            state=target,
            history=[*(current.history if current else []), (event.action, event.actor, event.at_ns)],
            last_request_id=event.request_id,
        )
    assert current is not None
    valid_until = current.valid_until_ns
    if event.action == "approve":
        valid_until = event.at_ns + int(event.valid_for_s * 1e9) if event.valid_for_s else None
    return current.model_copy(
        update={
            "state": target,
            "valid_until_ns": valid_until,
            "history": [*current.history, (event.action, event.actor, event.at_ns)],
            "last_request_id": event.request_id,
        }
    )


def preapproved(consumer: str, entry: str, items: list[str] | None, purpose: str, valid_until_ns: int | None) -> Application:
    """An approval written into the scenario (the platform started with it)."""
    return Application(
        id=f"{consumer}.{entry}",
        consumer=consumer,
        entry=entry,
        items=items,
        purpose=purpose,
        state=State.approved,
        valid_until_ns=valid_until_ns,
        history=[("preapproved", "scenario", 0)],
    )
