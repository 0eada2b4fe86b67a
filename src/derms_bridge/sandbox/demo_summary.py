"""The demo's summary: what each part of the sandbox kept, read through its own routes, and
each checked against what the day sent."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
from rich.markup import escape

from derms_bridge.catalog import BY_KEY
from derms_bridge.connectors.file_storage import open_storage
from derms_bridge.schemas.ops import INSTANCE_STATUSES

if TYPE_CHECKING:
    from derms_bridge.sandbox.demo import DayOfTraffic


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str


@dataclass
class DemoReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def nothing_lost(self) -> bool:
        return all(check.ok for check in self.checks)

    def check(self, what: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(what, ok, detail))


def outbound_calls(operator: httpx.Client) -> dict[tuple[str, str], dict[str, float]]:
    """The hub's calls by target and operation, counted by answer ('none': no answer), from
    its /metrics."""
    # Imported here: prometheus-client reads where the hub keeps its counts when first
    # imported, which the sandbox sets only once this module is loaded.
    from prometheus_client.parser import text_string_to_metric_families

    scraped = operator.get("/metrics")
    scraped.raise_for_status()
    calls: dict[tuple[str, str], dict[str, float]] = {}
    for family in text_string_to_metric_families(scraped.text):
        if family.name != "derms_bridge_outbound_calls":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.value:
                labels = sample.labels
                answers = calls.setdefault((labels["target"], labels["operation"]), {})
                answers[labels["status"]] = answers.get(labels["status"], 0) + sample.value
    return calls


class DemoSummary:
    """Reads what the sandbox's parts kept at the end of `day`, prints it, and checks it."""

    def __init__(self, day: DayOfTraffic) -> None:
        self.day = day
        self.sent = day.sent
        self.expect = day.expect
        self.operator = day.as_operator
        self.cpmcs = day.cpmcs_sim
        self.derms = day.derms_sim
        self.lookups = day.lookups

    def instances_by_flow(self) -> dict[str, Counter[str]]:
        counts: dict[str, Counter[str]] = {}
        since = (self.day.started_at - timedelta(seconds=1)).isoformat()
        for flow in BY_KEY:
            for status in INSTANCE_STATUSES:
                page = self.expect(
                    self.operator.get(
                        "/ops/instances",
                        params={
                            "flow": flow,
                            "status": status,
                            "received_from": since,
                            "limit": 1,
                        },
                    ),
                    200,
                )
                if page["total"]:
                    counts.setdefault(flow, Counter())[status] = page["total"]
        return counts

    def print_and_check(self) -> DemoReport:
        report = DemoReport()
        out = self.day.console
        out.rule("[bold]demo summary[/]")
        hub = self.instances_by_flow()
        out.print("[bold]hub instances, by flow and status[/] (GET /ops/instances)")
        for flow, statuses in hub.items():
            text = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
            out.print(f"  {BY_KEY[flow].number:>2} {flow:<30} {text}", highlight=False)

        received = self.expect(self.derms.get("/_sim/state/received"), 200)
        out.print("[bold]DERMS simulator received[/] (GET /_sim/state/received)")
        for route, bodies in sorted(received.items()):
            out.print(f"  {route:<24} {len(bodies)}", highlight=False)
        files = self.expect(self.derms.get("/_sim/state/sent"), 200)
        out.print("[bold]DERMS simulator sent[/] (GET /_sim/state/sent)")
        for sent in files:
            acks = " ".join(str(a["ackType"]) for a in sent["attempts"])
            out.print(
                f"  {sent['messageId']:<16} {sent['route']:<28} deliveries: {acks}",
                highlight=False,
            )

        enrollments = self.expect(self.cpmcs.get("/_sim/state/enrollments"), 200)
        acknowledgements = self.expect(self.cpmcs.get("/_sim/state/received/acknowledgements"), 200)
        statuses = self.expect(self.cpmcs.get("/_sim/state/received/device-statuses"), 200)
        sync_requests = self.expect(self.cpmcs.get("/_sim/state/received/sync-requests"), 200)
        events = self.expect(self.cpmcs.get("/_sim/state/program-events"), 200)
        reservations = self.expect(self.cpmcs.get("/_sim/state/reservations/summary"), 200)
        outcomes = self.expect(self.cpmcs.get("/_sim/state/outcomes/summary"), 200)
        out.print("[bold]CPMCS simulator kept[/] (GET /_sim/state/...)")
        for what, count in (
            ("enrollments", len(enrollments)),
            ("acknowledgements", len(acknowledgements)),
            ("device statuses", len(statuses)),
            ("sync requests", len(sync_requests)),
            ("program events", len(events)),
            ("reserved devices", reservations["devices"]),
            ("device outcomes", outcomes["devices"]),
        ):
            out.print(f"  {what:<24} {count:,}", highlight=False)

        out.print("[bold]hub calls to CPMCS and DERMS today, by answer[/] (GET /metrics)")
        for (target, operation), answers in sorted(outbound_calls(self.operator).items()):
            before = self.day.calls_before.get((target, operation), {})
            text = ", ".join(
                f"{count - before.get(answer, 0):g} {answer}"
                for answer, count in sorted(answers.items())
                if count > before.get(answer, 0)
            )
            if not text:
                continue
            out.print(f"  {target:<13} {operation:<28} {text}", highlight=False)

        mails = self.day.mail.messages()
        out.print(f"[bold]SMTP sink[/] {len(mails)} emails")
        for subject, count in sorted(Counter(m.subject for m in mails).items()):
            out.print(f"  {count:>3} {escape(subject)}", highlight=False)

        picked = self.picked_up()
        out.print("[bold]device score files[/]")
        for place, names in picked.items():
            out.print(f"  {place}: {', '.join(sorted(names))}", highlight=False)

        self.check_enrollments(report, enrollments, received, acknowledgements)
        self.check_syncs(report, received, sync_requests, statuses)
        self.check_event(report, events)
        self.check_files(report, files, reservations, outcomes, received)
        self.check_opt_outs(report, received, hub)
        self.check_scores(report, received, picked)
        self.check_hub(report, hub)

        out.rule("[bold]demo checks[/]")
        for check in report.checks:
            mark = "[green]ok[/]  " if check.ok else "[red]LOST[/]"
            out.print(f"{mark} {check.what}: {escape(check.detail)}", highlight=False)
        if report.nothing_lost:
            out.print("[bold green]demo: nothing lost[/]")
        else:
            lost = sum(not check.ok for check in report.checks)
            out.print(f"[bold red]demo: {lost} checks found something missing[/]")
        return report

    def picked_up(self) -> dict[str, set[str]]:
        """The device score files renamed as sent, by store."""
        sent_tag = self.lookups.prop("dacs.prefixtag.fileuploaded")
        picked: dict[str, set[str]] = {}
        for place, (settings, folder) in self.day.score_places().items():
            stored = asyncio.run(open_storage(settings).list(folder, sent_tag))
            names = {s.name.removeprefix(sent_tag) for s in stored}
            picked[place] = names & set(self.sent.score_files.get(place, {}))
        return picked

    def check_enrollments(
        self,
        report: DemoReport,
        enrollments: list[dict[str, Any]],
        received: dict[str, list[Any]],
        acknowledgements: list[Any],
    ) -> None:
        sent = {message_id for message_id, _ in self.sent.enrollments}
        kept = {e["transactionId"] for e in enrollments}
        refused = [mid for mid, code in self.sent.enrollments if code != "SUCCESS"]
        report.check(
            "enrollments",
            sent == kept and not refused,
            f"{len(sent)} sent in {self.sent.enrollment_batches} batches, "
            f"{len(kept & sent)} kept by CPMCS"
            + (f"; not SUCCESS: {', '.join(refused)}" if refused else ""),
        )
        synced = {b["dacsMessageId"] for b in received.get("/enroll", [])}
        acked = {a["syncRequestId"] for a in acknowledgements}
        report.check(
            "enrollment syncs and acknowledgements",
            synced == set(self.sent.enrollment_syncs) and acked == set(self.sent.enrollment_acks),
            f"{len(self.sent.enrollment_syncs)} synced, {len(synced)} received by DERMS; "
            f"{len(self.sent.enrollment_acks)} acknowledged, {len(acked)} kept by CPMCS",
        )

    def check_syncs(
        self,
        report: DemoReport,
        received: dict[str, list[Any]],
        sync_requests: list[Any],
        statuses: list[Any],
    ) -> None:
        programs = {b["dacsMessageId"] for b in received.get("/update-program", [])}
        aggregators = {b["dacsMessageId"] for b in received.get("/update-aggregator", [])}
        closed = {s["syncRequestId"] for s in sync_requests}
        expected = set(self.sent.program_syncs) | set(self.sent.aggregator_syncs)
        report.check(
            "program and aggregator syncs",
            programs == set(self.sent.program_syncs)
            and aggregators == set(self.sent.aggregator_syncs)
            and closed == expected,
            f"{len(expected)} sent, {len(programs) + len(aggregators)} received by DERMS, "
            f"{len(closed)} sync requests closed in CPMCS",
        )
        checked = {b["dacsMessageId"] for b in received.get("/status-check", [])}
        answered = {s["responseDetail"]["transactionID"] for s in statuses}
        report.check(
            "device status checks",
            checked == answered == set(self.sent.status_checks),
            f"{len(self.sent.status_checks)} sent, {len(checked)} received by DERMS, "
            f"{len(answered)} answers kept by CPMCS",
        )

    def check_event(self, report: DemoReport, events: list[dict[str, Any]]) -> None:
        kept = {
            e["externalIdentifier"]: e["status"]
            for e in events
            if e["eventExternalIdentifier"] == self.day.event_id
        }
        expected = {
            stage: self.lookups.translate("StageStatus", status)
            for stage, status in self.sent.final_stage_status.items()
        }
        report.check(
            f"event {self.day.event_id}",
            kept == expected,
            ", ".join(
                f"{stage} {self.sent.final_stage_status[stage]} ({code}), CPMCS "
                f"{kept.get(stage, 'has no such stage')}"
                for stage, code in expected.items()
            ),
        )

    def check_files(
        self,
        report: DemoReport,
        files: list[dict[str, Any]],
        reservations: dict[str, Any],
        outcomes: dict[str, Any],
        received: dict[str, list[Any]],
    ) -> None:
        by_id = {f["messageId"]: f for f in files}
        reservation = by_id.get(self.sent.reservation_id, {})
        reserved = reservations["events"].get(self.day.event_id, 0)
        report.check(
            "reservation file",
            reservation.get("lastAckType") == "SUCCESS" and reserved == self.sent.reservation_rows,
            f"{self.sent.reservation_rows:,} rows sent, {reserved:,} devices reserved in CPMCS, "
            f"DERMS acknowledged {reservation.get('lastAckType')}",
        )
        outcome = by_id.get(self.sent.outcome_id, {})
        posted = outcomes["events"].get(self.day.event_id, 0)
        acks = [a["ackType"] for a in outcome.get("attempts", [])]
        report.check(
            "outcome file",
            outcome.get("lastAckType") == "SUCCESS" and posted == self.sent.outcome_rows,
            f"{self.sent.outcome_rows:,} rows sent, {posted:,} device outcomes in CPMCS",
        )
        report.check(
            "CPMCS outage recovered",
            len(acks) >= 2 and acks[0] == "FAILURE" and acks[-1] == "SUCCESS",
            f"{self.sent.outcome_id} delivered {len(acks)} times by DERMS: "
            + " ".join(map(str, acks)),
        )
        ack_routes = ("/device-reservation-ack", "/device-outcome-ack")
        acked = sum(len(received.get(route, [])) for route in ack_routes)
        report.check(
            "file acknowledgements",
            acked == sum(len(f["attempts"]) for f in files),
            f"{acked} MsgAcks received by DERMS for {sum(len(f['attempts']) for f in files)} "
            "deliveries",
        )

    def check_opt_outs(
        self, report: DemoReport, received: dict[str, list[Any]], hub: dict[str, Counter[str]]
    ) -> None:
        opt_outs = received.get("/dacs-opt-out", [])
        by_type = Counter(b.get("optOutType") for b in opt_outs)
        skipped = hub.get("customer_unavailability", Counter())["skipped"]
        added = sum(1 for _, action in self.sent.unavailabilities if action == "ADD")
        others = len(self.sent.unavailabilities) - added
        report.check(
            "opt-outs",
            by_type["EVENT"] == len(self.sent.opt_outs)
            and by_type["UNAVAILABILITY"] == added
            and skipped == others,
            f"{len(self.sent.opt_outs)} event opt-outs and {added} unavailability sent, "
            f"DERMS received {by_type['EVENT']} and {by_type['UNAVAILABILITY']}; "
            f"{skipped} DELETE skipped by the hub",
        )

    def check_scores(
        self, report: DemoReport, received: dict[str, list[Any]], picked: dict[str, set[str]]
    ) -> None:
        arrived = Counter((f["fileName"], f["sha256"]) for f in received.get("/device-score", []))
        for place, files in self.sent.score_files.items():
            intact = sum(1 for name, digest in files.items() if arrived[(name, digest)])
            renamed = picked.get(place, set())
            report.check(
                f"device score files ({place})",
                intact == len(files) == len(renamed),
                f"{len(files)} waiting, {intact} received whole by DERMS, "
                f"{len(renamed)} renamed {self.lookups.prop('dacs.prefixtag.fileuploaded')}",
            )

    def check_hub(self, report: DemoReport, hub: dict[str, Counter[str]]) -> None:
        unfinished = {
            flow: statuses["in_progress"] + statuses["failed"]
            for flow, statuses in hub.items()
            if statuses["in_progress"] + statuses["failed"]
        }
        report.check(
            "hub instances",
            not unfinished,
            "none failed or left in progress"
            if not unfinished
            else ", ".join(f"{flow}: {count}" for flow, count in unfinished.items()),
        )
