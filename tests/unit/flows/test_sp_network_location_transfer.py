"""Flows 15, 18 and 19 with fakes: the preference picks the store, the file goes unchanged,
and the process-complete email and the error handler hear how it went."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import ValidationError

from derms_bridge.connectors.file_storage.interface import Folder
from derms_bridge.flows import sp_network_location_transfer
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.network_location import NetworkLocationTransfer, NetworkModelMessage
from tests.fakes import LOOKUPS, Fakes, fakes

CSV = b"servicePointId,transformerId,feederId,substationId\nSP-1,TX-9,FD-3,SS-1\n"
BUCKET = Folder("sp-network-location", namespace="cpmcs")
DIRECTORY = Folder("/inbound/sp-network-location")


def with_props(props: dict[str, str], lookups: Lookups = LOOKUPS) -> Lookups:
    config = lookups.tables["ConfigProps"]
    return Lookups(
        {**lookups.tables, "ConfigProps": replace(config, rows={**config.rows, **props})}
    )


def transfer(file_name: str = "sp network lokación.csv") -> NetworkLocationTransfer:
    return NetworkLocationTransfer(
        messageId="NM-1", fileName=file_name, loadType="INITIAL", fileReference="ref-1"
    )


def prepared(preference: str) -> Fakes:
    prepared = fakes(lookups=with_props({"dacs.file.target.transfer.pref": preference}))
    prepared.received_files.files["ref-1"] = CSV
    prepared.object_storage.folders.add(BUCKET)
    prepared.ftp.folders.add(DIRECTORY)
    return prepared


async def test_os_puts_the_object_in_the_configured_bucket_unchanged() -> None:
    the = prepared("os")

    result = await sp_network_location_transfer.run(transfer(), the.context)

    assert result.status == "succeeded"
    assert the.object_storage.files == {(BUCKET, "sp network lokación.csv"): CSV}
    assert the.ftp.files == {}
    [(child, request, _)] = the.children.ran
    assert child == "common_os_transfer"
    assert request.model_dump() == {
        "objectName": "sp network lokación.csv",
        "namespaceName": "cpmcs",
        "bucketName": "sp-network-location",
        "fileReference": "ref-1",
    }
    [(outcome, summary)] = the.notifications.sent
    assert outcome == "SUCCESS"
    assert f"({len(CSV)} bytes)" in summary
    assert "bucket sp-network-location of namespace cpmcs" in summary
    assert the.errors.reported == []


async def test_ftp_puts_the_file_in_the_configured_directory() -> None:
    the = prepared(" FTP ")

    result = await sp_network_location_transfer.run(transfer(), the.context)

    assert result.status == "succeeded"
    assert the.ftp.files == {(DIRECTORY, "sp network lokación.csv"): CSV}
    assert [child for child, _, _ in the.children.ran] == ["common_ftp_transfer"]
    assert "FTP directory /inbound/sp-network-location" in the.notifications.sent[0][1]


async def test_an_unknown_preference_is_an_error_and_nothing_is_stored() -> None:
    the = prepared("sftp")

    result = await sp_network_location_transfer.run(transfer(), the.context)

    assert result.status == "failed"
    assert "dacs.file.target.transfer.pref is 'sftp'; it must be 'os' or 'ftp'" in str(result.error)
    assert the.children.ran == []
    assert [outcome for outcome, _ in the.notifications.sent] == ["ERROR"]
    assert the.errors.reported == [result.error]


async def test_a_missing_bucket_fails_with_the_error_email_and_the_process_complete_email() -> None:
    the = prepared("os")
    the.object_storage.folders.clear()

    result = await sp_network_location_transfer.run(transfer(), the.context)

    assert result.status == "failed"
    assert result.error == (
        "sp network lokación.csv not transferred: "
        "fake object storage: folder 'sp-network-location' does not exist"
    )
    [(outcome, summary)] = the.notifications.sent
    assert outcome == "ERROR"
    assert "does not exist" in summary
    assert the.errors.reported == [result.error]


async def test_a_file_no_longer_kept_is_an_error() -> None:
    the = prepared("ftp")
    the.received_files.files.clear()

    result = await sp_network_location_transfer.run(transfer(), the.context)

    assert result.status == "failed"
    assert "no longer kept" in str(result.error)
    assert the.ftp.files == {}


@pytest.mark.parametrize(
    "file_name", ["../etc/passwd", "a/b.csv", "back\\slash.csv", "bell\x07.csv", "", " lead.csv"]
)
def test_a_file_name_that_could_leave_its_folder_is_refused(file_name: str) -> None:
    with pytest.raises(ValidationError) as refused:
        NetworkModelMessage(messageId="NM-1", fileName=file_name, loadType="INITIAL")

    assert [error["loc"] for error in refused.value.errors()] == [("fileName",)]


def test_load_type_is_initial_or_incremental() -> None:
    with pytest.raises(ValidationError) as refused:
        NetworkModelMessage.model_validate(
            {"messageId": "NM-1", "fileName": "a.csv", "loadType": "FULL"}
        )

    assert [error["loc"] for error in refused.value.errors()] == [("loadType",)]
