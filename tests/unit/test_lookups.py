"""The lookup CSV files: their default rows, how they are read, and how mistakes are named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from derms_bridge.errors import LookupMiss
from derms_bridge.lookups import PREFIX, LookupFileError, load_lookups

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "lookups"


@pytest.fixture
def lookups_dir(tmp_path: Path) -> Path:
    target = tmp_path / "lookups"
    shutil.copytree(SHIPPED, target)
    return target


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{PREFIX}{name}.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_rows_are_the_contracts() -> None:
    lookups = load_lookups(SHIPPED)

    assert lookups.translate("EventType", "DEVICE_TEST") == "X1DT"
    assert lookups.translate("StageStatus", "ACTIVE") == "X1IP"
    assert lookups.translate("StageStatus", "SCHEDULED") == "X1SD"
    assert lookups.translate("EventOutcome", "NON_RESPONSIVE") == "D1ND"
    assert lookups.translate("DeviceHeadendStatus", "DEREGISTERED") == "D1DR"
    assert lookups.translate("EnrollmentStatus", "CANCELED") == "CANCELLED"
    assert lookups.translate("AssetSpec", "CHARGEPOINT!HOME") == "X1CPHOME"
    assert lookups.translate("AssetType", "WATER_HEATER") == "X1WH"
    assert lookups.translate("CycleFrequency", "X1SN") == "SEASONAL"
    assert lookups.translate("WeekDay", "X1SU") == "SUN"
    assert lookups.translate("AllowEventDays", "X1WE") == "WEEKENDS"
    assert lookups.prop("dacs.dvcScore.extract.filename.prefix") == "SDCSE"
    assert lookups.prop("dacs.prefixtag.fileuploaded") == "Sent-"
    assert lookups.prop("dacs.prefixtag.filenotuploaded") == "Error-"
    assert lookups.prop("dacs.file.target.transfer.pref") == "os"
    assert lookups.flag("notification.email.error.flag")
    assert lookups.flag("notification.email.process.complete.flag")
    assert not lookups.flag("notification.email.process.nofile.flag")
    assert lookups.derms_connection_for("ANY") == "default"


def test_a_miss_names_the_lookup_and_the_value() -> None:
    with pytest.raises(LookupMiss) as miss:
        load_lookups(SHIPPED).translate("EventType", "PICNIC")

    assert str(miss.value) == "lookup OUTL-BRT-DACS_DRMS_EventType has no row for 'PICNIC'"


def test_email_rows_may_list_several_addresses(lookups_dir: Path) -> None:
    write(lookups_dir, "Email_ID", 'key,value\nto,"a@x.example, b@x.example;c@x.example"\n')

    lookups = load_lookups(lookups_dir)

    assert lookups.emails("to") == ["a@x.example", "b@x.example", "c@x.example"]
    assert lookups.emails("to.process.notification") == []


def test_routing_by_division_else_the_default(lookups_dir: Path) -> None:
    write(lookups_dir, "Routing", "division,connection\nSOUTH,south\n*,default\n")

    lookups = load_lookups(lookups_dir)

    assert lookups.derms_connection_for("SOUTH") == "south"
    assert lookups.derms_connection_for("NORTH") == "default"
    assert lookups.derms_connection_for(None) == "default"


def test_a_cloud_service_export_is_read(lookups_dir: Path) -> None:
    write(
        lookups_dir,
        "EventType",
        "DVM,OUTL-BRT-DACS_DRMS_EventType\nDERMS,CPMCS\nECONOMIC,X1EC\nHEATWAVE,X1HW\n",
    )

    assert load_lookups(lookups_dir).translate("EventType", "HEATWAVE") == "X1HW"


def test_each_mistake_is_named_with_file_and_line(lookups_dir: Path) -> None:
    event_type = write(lookups_dir, "EventType", "DERMS,CPMCS\nECONOMIC,X1EC\nECONOMIC,X1XX\n")
    asset_type = write(lookups_dir, "AssetType", "DERMS\nTHERMOSTAT\n")
    (lookups_dir / f"{PREFIX}WeekDay.csv").unlink()
    write(lookups_dir, "Routing", "division,connection\nNORTH,north\n")

    with pytest.raises(LookupFileError) as error:
        load_lookups(lookups_dir)

    problems = error.value.problems
    assert f"{event_type}:3: DERMS 'ECONOMIC' appears twice" in problems
    assert f"{asset_type}:1: the header needs two columns or more" in problems
    assert f"{lookups_dir / PREFIX}WeekDay.csv: missing" in problems
    assert any("Routing.csv: no '*' row" in p for p in problems)


def test_a_missing_required_property_is_named(lookups_dir: Path) -> None:
    write(lookups_dir, "ConfigProps", "property,value\nnotification.type.email,email\n")

    with pytest.raises(LookupFileError) as error:
        load_lookups(lookups_dir)

    assert any("property dacs.enroll.default.source is missing" in p for p in error.value.problems)
    assert any("notification.email.error.flag" in p for p in error.value.problems)


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(LookupFileError, match="does not exist"):
        load_lookups(tmp_path / "nowhere")


def test_an_email_type_the_hub_cannot_read_is_refused_on_the_lookups_page() -> None:
    from derms_bridge.lookup_tables import problems_in

    rows = [
        ("notification.type.email", "smtp"),
        ("dacs.enroll.default.source", "X1BY"),
        ("notification.email.error.flag", "true"),
    ]

    assert problems_in("ConfigProps", ("property", "value"), rows, {"default"}) == [
        "row 1: notification.type.email is 'smtp'; it must be true or email "
        "(error emails go) or false (they do not)"
    ]


@pytest.mark.parametrize(
    ("email_type", "emails_on"), [("true", True), ("Email", True), ("false", False)]
)
def test_error_emails_go_when_both_properties_say_true(
    lookups_dir: Path, email_type: str, emails_on: bool
) -> None:
    props = (lookups_dir / f"{PREFIX}ConfigProps.csv").read_text(encoding="utf-8")
    write(
        lookups_dir,
        "ConfigProps",
        props.replace("notification.type.email,email", f"notification.type.email,{email_type}"),
    )

    assert load_lookups(lookups_dir).error_emails_on() is emails_on
