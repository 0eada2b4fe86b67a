"""The CSV helpers the tests and benchmarks build their flow 7 and 8 files with."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.csv_files import (
    BAD_TIMESTAMP,
    OUTCOME_HEADER,
    RESERVATION_HEADER,
    UNKNOWN_OUTCOME,
    Corruption,
    file_chunks,
    write_outcome_csv,
    write_reservation_csv,
)


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def test_a_reservation_file_has_the_header_and_a_unique_nic_id_per_row(tmp_path: Path) -> None:
    path = write_reservation_csv(tmp_path / "reservations.csv", 3)

    header, *rows = read_rows(path)

    assert tuple(header) == RESERVATION_HEADER
    assert rows == [
        [str(n), f"NIC-00000{n}", "ECOBEE", "2026-12-01T14:00:00Z", "2026-12-01T18:00:00Z"]
        for n in (1, 2, 3)
    ]


def test_an_outcome_file_cycles_outcomes_and_splits_rows_among_events(tmp_path: Path) -> None:
    path = write_outcome_csv(tmp_path / "outcomes.csv", 6, event_ids=("E-1", "E-2"))

    header, *rows = read_rows(path)

    assert tuple(header) == OUTCOME_HEADER
    assert [row[1] for row in rows] == ["E-1", "E-1", "E-1", "E-2", "E-2", "E-2"]
    assert [row[4] for row in rows] == [
        "SUCCESS",
        "OVERRIDE",
        "NON_RESPONSIVE",
        "ERROR",
        "CANCELLED",
        "SUCCESS",
    ]
    assert [bool(row[7]) for row in rows] == [False, False, False, True, False, False]


def test_corrupted_rows_break_only_what_they_name(tmp_path: Path) -> None:
    corrupt = {
        1: Corruption.BAD_TIMESTAMP,
        2: Corruption.LONG_NIC_ID,
        3: Corruption.LONG_HEAD_END_SYSTEM,
        4: Corruption.LONG_ERROR_MESSAGE,
        5: Corruption.UNKNOWN_OUTCOME,
        6: Corruption.MISSING_COLUMN,
    }
    path = write_outcome_csv(tmp_path / "outcomes.csv", 7, corrupt=corrupt)

    _, *rows = read_rows(path)

    assert rows[0][5] == BAD_TIMESTAMP
    assert len(rows[1][2]) == 101
    assert rows[1][2].startswith("NIC-000002")
    assert len(rows[2][3]) == 51
    assert (rows[3][4], len(rows[3][7])) == ("ERROR", 101)
    assert rows[4][4] == UNKNOWN_OUTCOME
    assert len(rows[5]) == len(OUTCOME_HEADER) - 1
    assert "NIC-000006" not in rows[5]
    assert len(rows[6]) == len(OUTCOME_HEADER)


@pytest.mark.parametrize(
    "corrupt",
    [{0: Corruption.BAD_TIMESTAMP}, {4: Corruption.BAD_TIMESTAMP}, {1: Corruption.UNKNOWN_OUTCOME}],
    ids=["row-zero", "past-the-end", "outcome-only"],
)
def test_a_corruption_that_cannot_apply_is_refused(
    tmp_path: Path, corrupt: dict[int, Corruption]
) -> None:
    with pytest.raises(ValueError, match=r"row|outcome files only"):
        write_reservation_csv(tmp_path / "reservations.csv", 3, corrupt=corrupt)


def test_file_chunks_give_back_the_file_in_pieces(tmp_path: Path) -> None:
    path = write_reservation_csv(tmp_path / "reservations.csv", 1_000)

    chunks = list(file_chunks(path, chunk_size=4096))

    assert b"".join(chunks) == path.read_bytes()
    assert all(len(chunk) == 4096 for chunk in chunks[:-1])
    assert 0 < len(chunks[-1]) <= 4096
