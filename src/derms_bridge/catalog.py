"""Every flow of the reference: its number, identifier and name, as plain data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FlowInfo:
    key: str
    number: int
    identifier: str
    title: str


FLOWS: tuple[FlowInfo, ...] = (
    FlowInfo("enrollment_request", 1, "OUTL-BA-DRMS_DACS_ENROLLRQ", "Enrollment Request"),
    FlowInfo("enrollment_sync", 2, "OUTL-BA-DACS_DRMS_ENROLL_SYNC", "Enrollment Sync"),
    FlowInfo(
        "enroll_headend_status_ack",
        3,
        "OUTL-BA-DERMS_DACS_EN_DVSTAT_ACK",
        "Enroll and Device Headend Status Ack",
    ),
    FlowInfo("device_status_check", 4, "OUTL-BA-DACS_DRMS_DEVICE_STATUS", "Device Status Check"),
    FlowInfo(
        "device_status_check_ack", 5, "OUTL-BA-DACS_DRMS_DEVICE_STATUS", "Device Status Check Ack"
    ),
    FlowInfo(
        "program_event_status_update",
        6,
        "OUTL-BA-DRMS_DACS_STAGE_STAT_UPD",
        "Program Event Status Update",
    ),
    FlowInfo(
        "event_device_reservation", 7, "OUTL_BA_DRMS_DACS_EVT_DVCRESV", "Event Device Reservation"
    ),
    FlowInfo("event_device_outcome", 8, "OUTL-BA-DRMS_DACS_EVT_OUTC_TRNFR", "Event Device Outcome"),
    FlowInfo(
        "customer_event_opt_out", 9, "OUTL-BA-DACS_DERMS_EVTOPTOUT_UPD", "Customer Event Opt Out"
    ),
    FlowInfo(
        "customer_unavailability",
        10,
        "OUTL-BA-DACS_DERMS_EVT_CUST_UNAVAIL_UPD",
        "Customer Unavailability Update",
    ),
    FlowInfo("program_rule_sync", 11, "OUTL-BA-DACS_DERMS_PROGRULE_SYNC", "Program Rule Sync"),
    FlowInfo("program_rule_sync_ack", 12, "OUTL-BA-DRMS_DACS_SYNC_ACK", "Program Rule Sync Ack"),
    FlowInfo("aggregator_sync", 13, "OUTL-BA-DACS_DERMS_AGGREG_SYNC", "Aggregator Sync"),
    FlowInfo("aggregator_sync_ack", 14, "OUTL-BA-DERMS_DACS_AGGSYNC_ACK", "Aggregator Sync Ack"),
    FlowInfo(
        "sp_network_location_transfer",
        15,
        "OUTL-BA-DERMS_DACS_SPNWLOC_TRNFR",
        "SP Network Location Transfer",
    ),
    FlowInfo(
        "device_score_ftp", 16, "OUTL-BA-DRMS_DACS_SEND_DVCSCORE", "Device Score FTP Transfer"
    ),
    FlowInfo("device_score_os", 17, "OUTL-BA-DRMS_DACS_SEND_DVCSCOREC", "Device Score OS Transfer"),
    FlowInfo("common_ftp_transfer", 18, "OUTL-BA-DACS_FTP_TRANSFER", "Common FTP Transfer"),
    FlowInfo("common_os_transfer", 19, "OUTL-BA-DACS_OS_TRANSFER", "Common OS Transfer"),
    FlowInfo("common_error_handler", 20, "OUTL-BA-DACS_DRMS_ERROR", "Common Error Handler"),
)

#: The hub's own jobs that run as instances, beside the reference's flows: numbered 0.
PURGE = FlowInfo("purge", 0, "DERMS-BRIDGE-PURGE", "Purge (retention)")
HUB_JOBS: tuple[FlowInfo, ...] = (PURGE,)

BY_KEY = {flow.key: flow for flow in (*FLOWS, *HUB_JOBS)}


def flows_named(key_or_identifier: str) -> list[FlowInfo]:
    """The flows a key (enrollment_request) or an identifier (OUTL-BA-...) names; the
    reference gives flows 4 and 5 one identifier, so an identifier may name two."""
    if key_or_identifier in BY_KEY:
        return [BY_KEY[key_or_identifier]]
    return [f for f in FLOWS if f.identifier == key_or_identifier]
