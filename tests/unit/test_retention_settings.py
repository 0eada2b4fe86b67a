"""Retention's settings: the defaults, a flow's own days over them, and the mistakes named."""

from __future__ import annotations

from pathlib import Path

from derms_bridge.settings import load_settings
from tests.unit.test_settings import minimal_yaml, problems_of, write

RETENTION = """\
retention:
  default:
    succeeded: {payload_days: 3, instance_days: 30}
  flows:
    event_device_reservation:
      succeeded: {payload_days: 1}
      failed: {instance_days: 365}
  schedule: {cron: "5 1 * * *", timezone: Europe/Paris}
  batch_size: 500
"""


def test_the_defaults_keep_payloads_a_week_and_failures_half_a_year(tmp_path: Path) -> None:
    retention = load_settings(write(tmp_path, minimal_yaml())).retention

    succeeded = retention.keep("enrollment_request", "succeeded")
    failed = retention.keep("enrollment_request", "failed")
    rejected = retention.keep("purge", "rejected")
    assert (succeeded.payload_days, succeeded.instance_days) == (7, 90)
    assert (failed.payload_days, failed.instance_days) == (180, 180)
    assert (rejected.payload_days, rejected.instance_days) == (180, 180)
    assert (retention.schedule.cron, retention.schedule.enabled) == ("17 * * * *", True)
    assert retention.batch_size == 1000


def test_a_flows_own_days_go_over_the_default_one_by_one(tmp_path: Path) -> None:
    retention = load_settings(write(tmp_path, minimal_yaml() + RETENTION)).retention

    own = retention.keep("event_device_reservation", "succeeded")
    failed = retention.keep("event_device_reservation", "failed")
    other = retention.keep("enrollment_request", "succeeded")
    assert (own.payload_days, own.instance_days) == (1, 30)
    assert (failed.payload_days, failed.instance_days) == (180, 365)
    assert (other.payload_days, other.instance_days) == (3, 30)
    assert retention.schedule.timezone == "Europe/Paris"


def test_payloads_kept_longer_than_their_instances_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        minimal_yaml()
        + "retention:\n  default:\n    failed: {payload_days: 200, instance_days: 180}\n",
    )

    [problem] = problems_of(path)

    assert f"{path}:" in problem
    assert "retention.default.failed" in problem
    assert "payload_days (200) must not exceed instance_days (180)" in problem


def test_a_flows_override_that_outlives_its_instances_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        minimal_yaml()
        + "retention:\n  flows:\n    enrollment_request:\n"
        + "      succeeded: {payload_days: 100}\n",
    )

    [problem] = problems_of(path)

    assert "flows.enrollment_request.succeeded: payload_days (100) must not exceed" in problem


def test_an_unknown_flow_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        minimal_yaml() + "retention:\n  flows:\n    enrolment:\n      failed: {instance_days: 9}\n",
    )

    [problem] = problems_of(path)

    assert "retention.flows" in problem
    assert "'enrolment' is not a flow's key" in problem


def test_no_archive_by_default_and_one_names_its_store_and_folder(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, minimal_yaml())).retention.archive is None
    path = write(
        tmp_path,
        minimal_yaml()
        + "retention:\n  archive:\n    store: {type: local, root: /srv/hub}\n"
        + "    folder: archive\n",
    )

    archive = load_settings(path).retention.archive

    assert archive is not None
    assert (archive.store.type, archive.folder, archive.namespace) == ("local", "archive", None)


def test_an_archive_without_a_folder_or_with_an_unknown_store_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        minimal_yaml() + "retention:\n  archive:\n    store: {type: dropbox, root: /srv}\n",
    )

    problems = problems_of(path)

    assert any("retention.archive.store" in each and "dropbox" in each for each in problems)
    assert any("retention.archive.folder" in each and "Field required" in each for each in problems)
