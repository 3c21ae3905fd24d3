"""Death notices pushed by a civil registry: signed, fresh, once per message id, acknowledged."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from api.deps import Caller, require
from api.routers.common import ERRORS
from api.schemas import DeathEventAck, DeathNotifyCreate, DeathNotifyRead
from liveness.access.signatures import (
    SignatureRefused,
    sender_key,
    signed_bytes,
    verify_notice_signature,
)
from liveness.errors import InputInvalid
from liveness.ingest.notices import NOTICE_SOURCE, DeathNotice, receive_notify_message
from models import utcnow

router = APIRouter(tags=["death notices"], responses=ERRORS)


async def notify_envelope(
    request: Request, caller: Annotated[Caller, Depends(require("deaths.notify"))]
) -> tuple[Caller, dict[str, Any]]:
    """Read the raw envelope: a JSON object, parsed once, before any schema touches it."""
    try:
        envelope = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise InputInvalid("body: not a JSON document") from None
    if not isinstance(envelope, dict) or not {"signature", "header", "message"} <= set(envelope):
        raise InputInvalid("body: an object with signature, header and message is required")
    return caller, envelope


def _verified(caller: Caller, envelope: dict[str, Any]) -> tuple[DeathNotifyCreate, bytes]:
    """Check the signature, then the fields, the sender and the timestamp; refuse what fails."""
    header = envelope["header"]
    caller.intend("deaths.notify", "death_notification",
                  header.get("message_id") if isinstance(header, dict) else None)  # fmt: skip
    payload = signed_bytes(envelope["header"], envelope["message"])
    key = sender_key(caller.session, client_id=caller.principal.client_id)
    verify_notice_signature(key, payload=payload, signature=str(envelope["signature"]))
    try:
        body = DeathNotifyCreate.model_validate(envelope)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise InputInvalid(f"{field}: {first['msg']}") from None
    caller.intend("deaths.notify", "death_notification", body.header.message_id)
    if body.header.sender_id != caller.name:
        raise SignatureRefused(
            f"header.sender_id: {body.header.sender_id!r} is not this client ({caller.name})"
        )
    window = caller.services.settings.api_replay_window_s
    if abs((utcnow() - body.header.message_ts).total_seconds()) > window:
        raise SignatureRefused(
            f"header.message_ts: outside the replay window of {window} s; sign with the"
            " current time"
        )
    if body.header.total_count != len(body.message.events):
        raise InputInvalid(
            f"header.total_count: {body.header.total_count}, but the message has"
            f" {len(body.message.events)} events"
        )
    return body, payload


@router.post(
    "/death-notifications",
    response_model=DeathNotifyRead,
    summary="Notify deaths (a registry's signed notify message)",
)
def death_notifications(
    signed: Annotated[tuple[Caller, dict[str, Any]], Depends(notify_envelope)],
) -> DeathNotifyRead:
    """Take a registry's signed death events; acknowledge each with its match outcome."""
    caller, envelope = signed
    body, payload = _verified(caller, envelope)
    entry = caller.audit(
        "deaths.notify", "death_notification", body.header.message_id,
        {"events": len(body.message.events)},
    )  # fmt: skip
    notices = [
        DeathNotice(
            event=event.event_type, record_id=event.record_id, died_on=event.died_on,
            registered_on=event.registered_on, name=event.name, id_number=event.id_number,
            sex=event.sex, birth_date=event.birth_date, region_code=event.region_code,
        )
        for event in body.message.events
    ]  # fmt: skip
    policy = caller.services.certification_policy
    # A pushed notice's days are bounded as a delivered file's rows are by their contract.
    rules = caller.services.source_configs[NOTICE_SOURCE].validation
    acks, replayed = receive_notify_message(
        caller.session, sender=caller.name, message_id=body.header.message_id,
        payload=payload, notices=notices,
        demographic_confidence=policy.demographic_confidence,
        earliest=rules.earliest, today=caller.today(),
    )  # fmt: skip
    entry.detail = {
        **entry.detail, "replayed": replayed,
        "outcomes": {o: sum(a["outcome"] == o for a in acks) for o in {a["outcome"] for a in acks}},
    }  # fmt: skip
    return DeathNotifyRead(
        message_id=body.header.message_id, replayed=replayed, received=len(acks),
        acknowledgements=[DeathEventAck.model_validate(ack) for ack in acks],
    )  # fmt: skip
