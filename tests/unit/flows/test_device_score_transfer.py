"""Flows 16 and 17 with fake DERMS and fake emails over a real local folder, in milliseconds."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from derms_bridge.connectors.file_storage.interface import FileStorages, Folder
from derms_bridge.connectors.file_storage.local import LocalFolderStorage
from derms_bridge.errors import FileStorageError, TechnicalFault
from derms_bridge.flows.device_score_transfer import FTP_FLOW, OBJECT_STORAGE_FLOW
from derms_bridge.lookups import Lookups
from tests.fakes import LOOKUPS, Fakes, fakes

FOLDER = ("outbound", "device-score")


class FakeNotices:
    def __init__(self) -> None:
        self.no_files: list[str] = []
        self.complete: list[tuple[str, str, bool]] = []

    async def no_file(self, summary: str) -> None:
        self.no_files.append(summary)

    async def process_complete(self, outcome: str, summary: str, *, failed: bool) -> None:
        self.complete.append((outcome, summary, failed))


class ReadBreaksAfterFirstChunk(LocalFolderStorage):
    """A store whose downloads stop with an error after their first chunk."""

    async def read(self, folder: Folder, name: str) -> AsyncIterator[bytes]:
        yield b"first chunk"
        raise FileStorageError(f"{self.description}: connection lost reading {name!r}")


def with_props(**changes: str) -> Lookups:
    props = LOOKUPS.tables["ConfigProps"]
    rows = {**props.rows, **changes}
    return Lookups(tables={**LOOKUPS.tables, "ConfigProps": dataclasses.replace(props, rows=rows)})


def folder_of(root: Path) -> Path:
    folder = root.joinpath(*FOLDER)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def context(
    root: Path,
    derms: dict[str, object] | None = None,
    *,
    store: LocalFolderStorage | None = None,
    lookups: Lookups = LOOKUPS,
) -> tuple[Fakes, FakeNotices]:
    made = fakes(derms=derms, lookups=lookups)
    notices = FakeNotices()
    stores = FileStorages(
        ftp=store or LocalFolderStorage(root), object_storage=LocalFolderStorage(root)
    )
    made.context = dataclasses.replace(made.context, stores=stores, notices=notices)
    return made, notices


async def test_each_file_goes_to_derms_whole_and_is_renamed_sent(tmp_path: Path) -> None:
    folder = folder_of(tmp_path)
    (folder / "SDCSE_1.csv").write_bytes(b"device,score\nD1,0.9\n")
    (folder / "SDCSE 2 Besançon.csv").write_bytes(b"x" * 3_000_000)
    (folder / "Sent-SDCSE_0.csv").write_bytes(b"sent yesterday")
    (folder / "OTHER.csv").write_bytes(b"not a device score file")
    made, notices = context(tmp_path)

    result = await FTP_FLOW.run(made.context)

    assert result.status == "succeeded"
    assert made.derms.uploaded == {
        "SDCSE 2 Besançon.csv": b"x" * 3_000_000,
        "SDCSE_1.csv": b"device,score\nD1,0.9\n",
    }
    assert sorted(p.name for p in folder.iterdir()) == [
        "OTHER.csv",
        "Sent-SDCSE 2 Besançon.csv",
        "Sent-SDCSE_0.csv",
        "Sent-SDCSE_1.csv",
    ]
    assert made.run.keys == [("fileName", "SDCSE 2 Besançon.csv"), ("fileName", "SDCSE_1.csv")]
    assert made.errors.reported == []
    [(outcome, summary, failed)] = notices.complete
    assert (outcome, failed) == ("2 sent, 0 not sent", False)
    assert "  SDCSE_1.csv" in summary


async def test_a_refused_file_is_renamed_error_and_the_next_one_still_goes(
    tmp_path: Path,
) -> None:
    folder = folder_of(tmp_path)
    for name in ("SDCSE_1.csv", "SDCSE_2.csv", "SDCSE_3.csv"):
        (folder / name).write_text(name)
    made, notices = context(
        tmp_path, {"deviceScore": lambda name: 500 if name == "SDCSE_2.csv" else 200}
    )

    result = await FTP_FLOW.run(made.context)

    assert result.status == "failed"
    assert result.error == "2 sent, 1 not sent from /outbound/device-score on " + (
        f"local folder {tmp_path}"
    )
    assert sorted(p.name for p in folder.iterdir()) == [
        "Error-SDCSE_2.csv",
        "Sent-SDCSE_1.csv",
        "Sent-SDCSE_3.csv",
    ]
    assert made.errors.reported == [
        "device score file 'SDCSE_2.csv' not sent: DERMS answered HTTP 500 to deviceScore"
    ]
    assert result.reply is not None
    assert result.reply.sent == ["SDCSE_1.csv", "SDCSE_3.csv"]
    [(_, summary, failed)] = notices.complete
    assert failed
    assert "Files not sent (1):\n  SDCSE_2.csv: DERMS answered HTTP 500 to deviceScore" in summary


async def test_derms_down_renames_every_file_error(tmp_path: Path) -> None:
    folder = folder_of(tmp_path)
    (folder / "SDCSE_1.csv").write_text("1")
    down = TechnicalFault("DERMS default unreachable at http://127.0.0.1:9: refused")
    made, _ = context(tmp_path, {"deviceScore": down})

    result = await FTP_FLOW.run(made.context)

    assert result.status == "failed"
    assert [p.name for p in folder.iterdir()] == ["Error-SDCSE_1.csv"]
    assert made.errors.reported == [
        "device score file 'SDCSE_1.csv' not sent: DERMS default unreachable at "
        "http://127.0.0.1:9: refused"
    ]


async def test_a_download_cut_part_way_is_never_renamed_sent(tmp_path: Path) -> None:
    folder = folder_of(tmp_path)
    (folder / "SDCSE_1.csv").write_text("the whole file")
    made, _ = context(tmp_path, store=ReadBreaksAfterFirstChunk(tmp_path))

    result = await FTP_FLOW.run(made.context)

    assert result.status == "failed"
    assert [p.name for p in folder.iterdir()] == ["Error-SDCSE_1.csv"]
    assert made.errors.reported == [
        "device score file 'SDCSE_1.csv' not sent: reading the file failed part-way: "
        f"local folder {tmp_path}: connection lost reading 'SDCSE_1.csv'"
    ]


async def test_a_name_that_could_leave_its_folder_is_refused_before_any_store_call(
    tmp_path: Path,
) -> None:
    folder = folder_of(tmp_path)
    (folder / "SDCSE..csv").write_text("?")
    (folder / "SDCSE_ok.csv").write_text("ok")
    made, _ = context(tmp_path)

    result = await FTP_FLOW.run(made.context)

    assert result.status == "failed"
    assert sorted(p.name for p in folder.iterdir()) == ["SDCSE..csv", "Sent-SDCSE_ok.csv"]
    assert list(made.derms.uploaded) == ["SDCSE_ok.csv"]
    assert made.errors.reported == [
        "device score file 'SDCSE..csv' not sent: refused before any store call: "
        "file name 'SDCSE..csv' contains '..'"
    ]


@pytest.mark.parametrize(("flag", "emails"), [("true", 1), ("false", 0)])
async def test_no_file_stops_the_run_with_the_no_file_email_when_its_flag_says(
    tmp_path: Path, flag: str, emails: int
) -> None:
    folder_of(tmp_path)
    lookups = with_props(**{"notification.email.process.nofile.flag": flag})
    made, notices = context(tmp_path, lookups=lookups)

    result = await FTP_FLOW.run(made.context)

    assert result.status == "skipped"
    assert result.error is None
    assert result.skipped_reason == (
        f"no file beginning with 'SDCSE' in /outbound/device-score on local folder {tmp_path}"
    )
    assert len(notices.no_files) == emails
    assert notices.complete == []


async def test_a_missing_folder_fails_the_run_with_the_error_email(tmp_path: Path) -> None:
    made, notices = context(tmp_path)

    result = await FTP_FLOW.run(made.context)

    assert result.status == "failed"
    assert made.errors.reported == [
        "cannot list the device score files in /outbound/device-score on local folder "
        f"{tmp_path}: local folder {tmp_path}: folder '/outbound/device-score' does not exist"
    ]
    assert notices.complete == []


async def test_flow_17_reads_the_bucket_in_its_namespace(tmp_path: Path) -> None:
    bucket = tmp_path / "cpmcs" / "device-score"
    bucket.mkdir(parents=True)
    (bucket / "SDCSE_os.csv").write_text("from object storage")
    made, _ = context(tmp_path)

    result = await OBJECT_STORAGE_FLOW.run(made.context)

    assert result.status == "succeeded"
    assert made.derms.uploaded == {"SDCSE_os.csv": b"from object storage"}
    assert [p.name for p in bucket.iterdir()] == ["Sent-SDCSE_os.csv"]
