"""The common error handler (flow 20) against a real SMTP sink and both databases."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from derms_bridge.catalog import BY_KEY
from derms_bridge.connectors.mail import Mailer
from derms_bridge.engine.error_handler import CommonErrorHandler
from derms_bridge.engine.redaction import Redactor
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.servers import free_port
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings import Smtp
from derms_bridge.store.instances import InstanceStore

FLOW = BY_KEY["enrollment_request"]
SECRET = "pa55-w0rd-never-shown"


async def new_instance(store: InstanceStore) -> str:
    instance_id = str(uuid.uuid4())
    await store.create(instance_id=instance_id, flow=FLOW.key, caller="derms", payload={}, keys=[])
    return instance_id


def handler(store: InstanceStore, mailbox: SmtpSink, lookups: Lookups) -> CommonErrorHandler:
    mailer = Mailer(Smtp(host=mailbox.host, port=mailbox.port, timeout=5))
    return CommonErrorHandler(store, mailer, lambda: lookups, Redactor([SECRET]))


async def test_one_email_per_distinct_error_per_instance(
    store: InstanceStore, mailbox: SmtpSink, default_lookups: Lookups
) -> None:
    errors = handler(store, mailbox, default_lookups)
    first, second = await new_instance(store), await new_instance(store)
    keys = [("messageId", "M-9"), ("enrollmentId", "E-9")]

    for _ in range(3):
        await errors.handle(FLOW, first, keys, "CPMCS answered HTTP 500 to enrollProgram")
    await errors.handle(FLOW, first, keys, "CPMCS did not answer enrollProgram within 3 s")
    await errors.handle(FLOW, second, keys, "CPMCS answered HTTP 500 to enrollProgram")

    mails = mailbox.wait_for(3)
    assert len(mails) == 3
    assert sorted(m.body_text.count(first) > 0 for m in mails) == [False, True, True]
    body = mails[0].body_text
    assert "OUTL-BA-DRMS_DACS_ENROLLRQ" in body
    assert "messageId: M-9" in body
    assert "enrollmentId: E-9" in body
    assert mails[0].mail_from == "derms-bridge@utility.example"


async def test_no_secret_reaches_the_email(
    store: InstanceStore, mailbox: SmtpSink, default_lookups: Lookups
) -> None:
    errors = handler(store, mailbox, default_lookups)

    await errors.handle(FLOW, await new_instance(store), [], f"login failed for {SECRET}")

    [mail] = mailbox.wait_for(1)
    assert SECRET not in mail.body_text
    assert SECRET not in mail.subject
    assert "login failed for ********" in mail.body_text


async def test_an_smtp_server_that_is_down_is_reported_not_raised(
    store: InstanceStore, default_lookups: Lookups
) -> None:
    mailer = Mailer(Smtp(host="127.0.0.1", port=free_port(), timeout=2))
    errors = CommonErrorHandler(store, mailer, lambda: default_lookups, Redactor([]))

    problem = await errors.handle(FLOW, await new_instance(store), [], "boom")

    assert problem is not None
    assert "did not take the message" in problem


async def test_no_recipients_is_reported(
    store: InstanceStore, mailbox: SmtpSink, default_lookups: Lookups
) -> None:
    email_ids = default_lookups.tables["Email_ID"]
    lookups = Lookups(
        tables={**default_lookups.tables, "Email_ID": replace(email_ids, rows={"from": "x@y.z"})}
    )

    problem = await handler(store, mailbox, lookups).handle(
        FLOW, await new_instance(store), [], "boom"
    )

    assert problem == "no 'to' recipients in lookup OUTL-BRT-DACS_DRMS_Email_ID"
    with pytest.raises(TimeoutError):
        mailbox.wait_for(1, timeout=0.3)


def test_an_error_of_several_lines_makes_a_subject_of_one() -> None:
    from derms_bridge.catalog import BY_KEY
    from derms_bridge.engine.error_handler import error_email

    subject, body = error_email(
        BY_KEY["event_device_reservation"], "I-1", [], "2 rows set aside:\n  line 3: bad\n  line 4"
    )

    assert "\n" not in subject and "\r" not in subject
    assert subject.endswith("error: 2 rows set aside: line 3: bad line 4")
    assert "  line 3: bad\n" in body
