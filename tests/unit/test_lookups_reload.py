"""A running hub takes lookups changed on disk (an import, another process's edit)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from derms_bridge.bootstrap import LookupsHolder
from derms_bridge.lookup_tables import import_lookups
from derms_bridge.lookups import PREFIX, load_lookups

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "lookups"


@pytest.fixture
def lookups_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "lookups"
    shutil.copytree(SHIPPED, directory)
    return directory


def config_props_with(tmp_path: Path, prop: str, value: str) -> Path:
    source = (SHIPPED / f"{PREFIX}ConfigProps.csv").read_text(encoding="utf-8-sig")
    lines = [
        f"{prop},{value}" if line.split(",", 1)[0] == prop else line for line in source.splitlines()
    ]
    edited = tmp_path / f"{PREFIX}ConfigProps.csv"
    edited.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return edited


def test_an_imported_lookup_is_in_force_without_a_restart(
    lookups_dir: Path, tmp_path: Path
) -> None:
    holder = LookupsHolder(load_lookups(lookups_dir), lookups_dir, recheck_seconds=0)
    assert holder().prop("dacs.file.target.transfer.pref") == "os"

    import_lookups(
        [config_props_with(tmp_path, "dacs.file.target.transfer.pref", "ftp")],
        lookups_dir,
        {"default"},
    )

    assert holder().prop("dacs.file.target.transfer.pref") == "ftp"


def test_a_broken_file_leaves_the_lookups_in_force(
    lookups_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = LookupsHolder(load_lookups(lookups_dir), lookups_dir, recheck_seconds=0)
    (lookups_dir / f"{PREFIX}EventType.csv").write_text("just one column\n", encoding="utf-8")

    assert holder().translate("EventType", "ECONOMIC") == "X1EC"
    assert "lookups changed on disk but were not taken" in caplog.text
    assert "EventType" in caplog.text
