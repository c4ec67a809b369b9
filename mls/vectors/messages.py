"""Checker for ``messages.json``: every field decodes with its struct and re-encodes byte-exactly.

FORMAT.md "Messages": the ``mls_*``, ``public_message_*`` and
``private_message`` fields are MLSMessages (whose wire format is also
checked), ``ratchet_tree`` is ``optional<Node> ratchet_tree<V>``, and the
proposal fields are the bare proposal bodies (no ``proposal_type``). The
contents of every known extension found inside (e.g. the ``ratchet_tree``
extension the ReInit proposals carry) are parsed and re-encoded too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields, is_dataclass

from mls.vectors import MLSVectorMismatch, expect
from mls.wire import (
    Add,
    ApplicationId,
    Extension,
    ExtensionContent,
    ExternalPub,
    ExternalSenders,
    RequiredCapabilities,
    Commit,
    ContentType,
    ExternalInit,
    GroupContextExtensions,
    GroupSecrets,
    MLSMessage,
    PreSharedKey,
    PublicMessage,
    RatchetTreeExtension,
    ReInit,
    Remove,
    Update,
    WireFormat,
    WireStruct,
)

#: Field name -> struct it holds.
_STRUCTS: dict[str, type[WireStruct]] = {
    "mls_welcome": MLSMessage,
    "mls_group_info": MLSMessage,
    "mls_key_package": MLSMessage,
    "ratchet_tree": RatchetTreeExtension,
    "group_secrets": GroupSecrets,
    "add_proposal": Add,
    "update_proposal": Update,
    "remove_proposal": Remove,
    "pre_shared_key_proposal": PreSharedKey,
    "re_init_proposal": ReInit,
    "external_init_proposal": ExternalInit,
    "group_context_extensions_proposal": GroupContextExtensions,
    "commit": Commit,
    "public_message_application": MLSMessage,
    "public_message_proposal": MLSMessage,
    "public_message_commit": MLSMessage,
    "private_message": MLSMessage,
}

#: Extension contents checked wherever an extension of that type appears.
_TYPED_EXTENSIONS: dict[int, type[ExtensionContent]] = {
    cls.EXTENSION_TYPE: cls
    for cls in (ApplicationId, RatchetTreeExtension, RequiredCapabilities, ExternalPub, ExternalSenders)
}

#: MLSMessage fields -> (wire format, content type of a PublicMessage or None).
_ENVELOPES: dict[str, tuple[WireFormat, ContentType | None]] = {
    "mls_welcome": (WireFormat.MLS_WELCOME, None),
    "mls_group_info": (WireFormat.MLS_GROUP_INFO, None),
    "mls_key_package": (WireFormat.MLS_KEY_PACKAGE, None),
    "public_message_application": (WireFormat.MLS_PUBLIC_MESSAGE, ContentType.APPLICATION),
    "public_message_proposal": (WireFormat.MLS_PUBLIC_MESSAGE, ContentType.PROPOSAL),
    "public_message_commit": (WireFormat.MLS_PUBLIC_MESSAGE, ContentType.COMMIT),
    "private_message": (WireFormat.MLS_PRIVATE_MESSAGE, None),
}


def check(case: dict[str, str]) -> None:
    """Decode and re-encode every field of one ``messages.json`` case."""
    for name, struct in _STRUCTS.items():
        data = bytes.fromhex(case[name])
        value = struct.decode(data)
        expect(f"{name} re-encoding", value.encode(), data)
        if isinstance(value, MLSMessage):
            wire_format, content_type = _ENVELOPES[name]
            expect(f"{name} wire_format", value.wire_format, wire_format)
            if content_type is not None:
                body = value.body
                if not isinstance(body, PublicMessage):
                    raise MLSVectorMismatch(f"{name}: body is {type(body).__name__}, want PublicMessage")
                expect(f"{name} content_type", body.content.content_type, content_type)
        for extension in _extensions_in(value):
            typed = _TYPED_EXTENSIONS.get(extension.extension_type)
            if typed is not None:
                content = typed.from_extension(extension)
                expect(f"{name} {typed.__name__} re-encoding", content.encode(), extension.extension_data)


def _extensions_in(value: object) -> Iterator[Extension]:
    """Every ``Extension`` nested anywhere in a decoded struct."""
    if isinstance(value, Extension):
        yield value
    elif isinstance(value, tuple):
        for item in value:
            yield from _extensions_in(item)
    elif is_dataclass(value):
        for item in fields(value):
            yield from _extensions_in(getattr(value, item.name))
