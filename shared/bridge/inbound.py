"""What customers send back, for other teams: `bridge.replies.v1` and `bridge.conversations.v1`.

A customer's WhatsApp reply (Siteti's `message.received`) and a conversation's change of state
(`conversation.state`) are CloudEvents 1.0 structured JSON, written by the receipts service
(receipts.topics) through its outbox, in the transaction that stores the webhook. The envelope's
`id` is Siteti's event id, so a redelivered webhook is the same event (and is not written twice).

No clear number leaves the bridge here either (docs/events.md): the sender is `from`, sealed
(`enc:<key id>:…`, kind `phone`), and `from_index`, the keyed hash of its Siteti form, which is
also the Kafka key (else the keyed hash of the BSUID; receipts.topics.partition_key).

The models are the producer's side (closed: unknown fields are refused); scripts/gen_schemas.py
turns them into the open JSON Schemas of schemas/v1/.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from .events import CONVERSATIONS_TOPIC, REPLIES_TOPIC

# (Literal types need the text itself: the models repeat these, a unit test keeps them equal.)
SOURCE: Final = "/siteti-bridge/receipts"
REPLY_TYPE: Final = "bridge.message.received.v1"
CONVERSATION_TYPE: Final = "bridge.conversation.state.v1"
# A schema's name: its file is schemas/v1/<name>.json and its $id (the events' `dataschema`)
# urn:siteti-bridge:schema:<name>:v1, the canonical events' form. The types keep the version
# suffix the design gave them.
REPLY_SCHEMA: Final = "bridge.message.received"
CONVERSATION_SCHEMA: Final = "bridge.conversation.state"
REPLY_URN: Final = "urn:siteti-bridge:schema:bridge.message.received:v1"
CONVERSATION_URN: Final = "urn:siteti-bridge:schema:bridge.conversation.state:v1"
ReplyUrn = Literal["urn:siteti-bridge:schema:bridge.message.received:v1"]
ConversationUrn = Literal["urn:siteti-bridge:schema:bridge.conversation.state:v1"]


# Limits, the receipts parser's too (receipts.webhooks takes them from here): Siteti's ids
# are far shorter; a WhatsApp text message is at most 4,096 characters.
MAX_ID_LENGTH = 200
MAX_REFERENCE_LENGTH = 500
MAX_TEXT_LENGTH = 4096
MAX_PAYLOAD_LENGTH = 1000
# The subject is the audit reference (a Siteti reference, or `contact:`/`bsuid:`/`siteti:` and
# an id), as GET /audit/{reference} finds it.
MAX_SUBJECT_LENGTH = MAX_REFERENCE_LENGTH + len("contact:")

HASH_PATTERN = "^[0-9a-f]{40}$"
SEALED_PATTERN = "^enc:[A-Za-z0-9_.\\-]{1,32}:[A-Za-z0-9_\\-]+={0,2}$"

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
Hash = Annotated[str, StringConstraints(pattern=HASH_PATTERN)]
Sealed = Annotated[str, StringConstraints(pattern=SEALED_PATTERN)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)]
Payload = Annotated[str, StringConstraints(max_length=MAX_PAYLOAD_LENGTH)]
Reference = Annotated[str, StringConstraints(max_length=MAX_REFERENCE_LENGTH)]
Subject = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SUBJECT_LENGTH)]


def _described(text: str) -> ConfigDict:
    return ConfigDict(
        extra="forbid",
        serialize_by_alias=True,
        # Every field is on every record (null when unknown), so every field is required.
        json_schema_serialization_defaults_required=True,
        json_schema_extra={"description": text},
    )


class ReplyData(BaseModel):
    model_config = _described("A customer's WhatsApp message to the business.")

    message_id: Id | None = Field(description="Siteti's id of the customer's message.")
    contact_id: Id | None = Field(description="The Siteti contact who wrote; null if unknown.")
    from_index: Hash | None = Field(
        description="Keyed hash (HMAC-SHA-256, 40 hex) of the sender's number in Siteti's form"
        " (international digits, no +): the customer directory's phone_index. Null when the"
        " sender has no number (a BSUID only)."
    )
    from_: Sealed | None = Field(
        # `from` on the wire (and read from it), `from_` in Python, where `from` is a keyword.
        serialization_alias="from",
        validation_alias=AliasChoices("from", "from_"),
        description="The sender's number, sealed (enc:<key id>:…, AES-256-GCM, kind phone):"
        " never in clear. Opened with BRIDGE_DATA_KEYS.",
    )
    bsuid: Id | None = Field(
        description="Business-scoped user id, for a customer who writes from a WhatsApp"
        " username rather than a number."
    )
    text: Text | None = Field(
        description="What the customer wrote, as written, except that a run of 8 or more digits"
        " (a phone number, say) is masked to its last four (•••4567). Null for a button press"
        " without text."
    )
    button_payload: Payload | None = Field(
        description="The payload of the quick-reply button pressed, if any."
    )
    context_message_id: Id | None = Field(
        description="The bridge's message the customer replied to (WhatsApp's reply context)."
    )
    reference: Reference | None = Field(
        description="The reference of the message replied to (<provider>:<transaction"
        " reference>), when Siteti knows it."
    )
    received_at: AwareDatetime = Field(description="When Siteti received it (UTC).")


class ConversationData(BaseModel):
    model_config = _described("A change of a customer's WhatsApp conversation (service window).")

    contact_id: Id | None = Field(description="The Siteti contact; null if unknown.")
    state: Id | None = Field(description="open or closed, as Siteti says.")
    window_expires_at: AwareDatetime | None = Field(
        description="When the 24-hour service window closes (UTC); null when closed or unknown."
    )
    bsuid: Id | None = Field(description="Business-scoped user id, when Siteti gives one.")
    from_index: Hash | None = Field(
        description="Keyed hash of the customer's number (as in replies), when Siteti gives one."
    )
    changed_at: AwareDatetime = Field(description="When the state changed (UTC).")


class _Envelope(BaseModel):
    specversion: Literal["1.0"] = Field("1.0", description="CloudEvents version: always 1.0.")
    id: Id = Field(description="Siteti's event id: a redelivery has the same id. Dedupe on it.")
    source: Literal["/siteti-bridge/receipts"] = Field(
        SOURCE, description="The producer: the receipts service."
    )
    subject: Subject = Field(
        description="The audit reference the event is filed under (GET /audit/{subject}):"
        " the message's reference, else contact:<id>, bsuid:<id> or siteti:<event id>."
    )
    time: AwareDatetime = Field(description="When it happened, by Siteti's clock (UTC).")
    datacontenttype: Literal["application/json"] = "application/json"
    dataversion: Literal["1"] = Field(
        "1", description="Contract version of data (extension attribute)."
    )


class ReplyEvent(_Envelope):
    model_config = _described(f"A customer's reply, as on {REPLIES_TOPIC.name}.")

    type: Literal["bridge.message.received.v1"] = REPLY_TYPE
    dataschema: ReplyUrn = REPLY_URN
    data: ReplyData


class ConversationEvent(_Envelope):
    model_config = _described(f"A conversation's state, as on {CONVERSATIONS_TOPIC.name}.")

    type: Literal["bridge.conversation.state.v1"] = CONVERSATION_TYPE
    dataschema: ConversationUrn = CONVERSATION_URN
    data: ConversationData


#: Schema name → the model its schema is generated from (scripts/gen_schemas.py).
MODELS: dict[str, type[ReplyEvent] | type[ConversationEvent]] = {
    REPLY_SCHEMA: ReplyEvent,
    CONVERSATION_SCHEMA: ConversationEvent,
}
