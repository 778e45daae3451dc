"""Personal data in a delivery's column names, and in the keys of its map columns.

A name is read as ``schemas/deliveries.yaml`` declares (bracketed notes, date format hints and a
possessive 's removed; a name joining several judged part by part) before the forbidden patterns
are applied. The names refused here were accepted before; the names allowed are the contract's
columns and the harmless extras real lab deliveries carry.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.ingest.delivery import DeliveryRejected, check_delivery
from pipelines.study import load_contracts
from tests.conftest import run_build
from tests.landing import treg, write_delivery, write_reference
from tests.stored_text import columns_containing, warehouse_text

TREG_FILE = "labs/treg/treg_batch01.parquet"

# Found accepted in review: each must be refused.
NEWLY_REFUSED = [
    # names and initials
    "Patient's Name", "Patient’s name", "NOM_PRENOM", "Nom Prénom", "Nom et prénom", "PATIENT", "pat_init", "pt_inits",
    "subject_id_initials",
    # birth dates with a format hint, or joined with another name
    "DOB (dd/mm/yyyy)", "Date de naissance (JJ/MM/AAAA)", "dob_ddmmyyyy", "birth_date_yyyy", "dob_yyyymmdd",
    "DOB dd/mm/yyyy", "dob_dd-mmm-yyyy", "Patient Initials/DOB", "name_and_dob", "Name, DOB", "Nom & Prénom",
    # identifiers
    "CHI_number", "CHI", "N° NHS", "Nº NHS", "numero_nhs", "hosp_no", "hospital_num",
    # dotted formats and abbreviations (a dot is part of the name, not a struct path)
    "DOB (dd.mm.yyyy)", "Date de naissance (JJ.MM.AAAA)", "D.O.B",
]

# Found accepted in a later review: a copy's number or qualifier at the end of the name, parts of a
# birth date or a home, UK National Insurance numbers, the people close to the patient.
SUFFIXED_OR_MISSED = [
    "dob1", "dob_2", "DOB.1", "date_of_birth1", "birth_date_2", "name_2", "first_name_2", "surname2", "initials1",
    "postcode2", "nhs_number2", "mrn1", "dob_old", "dob_raw", "first_name_clean", "patient_dob_str", "Surname (v2)",
    "birth_month", "month_of_birth", "dob_year", "bdate", "street", "street_name", "house_number", "nino",
    "ni_number", "mother_maiden_name", "guardian_name", "next_of_kin", "fax",
]

# Refused before this change: they must stay refused.
STILL_REFUSED = ["Patient_Name", "DOB", "dateOfBirth", "nom", "date_naissance", "Initials", "NHS_Number", "E-mail",
                 "Postcode", "NHS"]

# Harmless extras of lab deliveries. patient_id and subject_id are allowed on purpose (a pseudonymised trial
# identifier), so is birthday_flag (a yes/no, not the date): see the comments in schemas/deliveries.yaml.
LAB_EXTRAS = ["gene_name", "kit_name", "analyte_name", "site_name", "operator", "instrument_id", "run_date",
              "plate_id", "batch_no", "comment", "dilution", "patient_id", "subject_id", "sample_name", "date",
              "birthday_flag", "NfL (pg/mL)", "CD4+ CD25+ count", "n_hosp", "size_mm", "date and time", "chi_square",
              "Patient (ID)", "Patient [pseudonym]", "Subject (ID)", "cd4_count_2", "result_raw", "plate_id_old",
              "panel_v2", "qc_comment_text", "gene_name_1", "street_date"]
CONTRACT_COLUMNS = sorted({c.name for f in load_contracts().families.values() for c in f.columns})


@pytest.mark.parametrize("column", NEWLY_REFUSED + SUFFIXED_OR_MISSED + STILL_REFUSED)
def test_personal_data_column_name_is_refused(column):
    assert load_contracts().is_personal_data(column)


@pytest.mark.parametrize("column", CONTRACT_COLUMNS + LAB_EXTRAS)
def test_contract_and_lab_column_is_allowed(column):
    assert not load_contracts().is_personal_data(column)


@pytest.mark.parametrize(("column", "names"), [
    ("Patient Initials/DOB", ["patientinitials", "dob"]),
    ("Date de naissance (JJ/MM/AAAA)", ["datedenaissance"]),
    ("Patient's Name", ["patientname"]),
    ("birth_date_yyyy", ["birthdate"]),
    ("NfL (pg/mL)", ["nflpg", "ml"]),
    ("Patient (ID)", ["patientid"]),
])
def test_a_column_name_is_read_without_notes_and_split_into_the_names_it_joins(column, names):
    assert load_contracts().names_in(column) == names


def _refusal(tmp_path, **extra: tuple[pa.DataType, object]) -> DeliveryRejected:
    """Check a treg delivery carrying the ``extra`` columns (name -> (type, value)); it must be refused."""
    row = treg("S002", **{name: value for name, (_, value) in extra.items()})
    path = write_delivery(tmp_path, "treg", "treg_batch01.parquet", [row],
                          **{name: type_ for name, (type_, _) in extra.items()})
    with pytest.raises(DeliveryRejected) as refused:
        check_delivery(path, TREG_FILE, load_contracts()["treg"])
    return refused.value


@pytest.mark.parametrize("column", ["DOB (dd.mm.yyyy)", "D.O.B"])
def test_a_dotted_column_name_is_judged_whole_not_as_a_struct_path(tmp_path, column):
    refused = _refusal(tmp_path, **{column: (pa.string(), "02.01.1950")})
    assert f"column(s) {column!r} look like personal data" in str(refused)


def test_refusal_names_the_column_as_delivered(tmp_path):
    refused = _refusal(tmp_path, **{"Patient Initials/DOB": (pa.string(), "JD 02/01/1950")})
    assert refused.rule == "no_personal_data"
    assert "column(s) 'Patient Initials/DOB' look like personal data" in str(refused)
    assert "1950" not in str(refused)


TEXT_MAP = pa.map_(pa.string(), pa.string())
PERSONAL_MAP = [("dob", "1950-01-02"), ("lab", "Glasgow"), ("name", "Jean Dupontellier")]


def test_personal_data_in_the_keys_of_a_map_column_is_refused(tmp_path):
    refused = _refusal(tmp_path, extra=(TEXT_MAP, PERSONAL_MAP))
    assert refused.rule == "no_personal_data"
    assert "column(s) 'extra' key 'dob', 'extra' key 'name' look like personal data" in str(refused)
    assert "Dupontellier" not in str(refused) and "1950" not in str(refused)


@pytest.mark.parametrize(("type_", "value", "named"), [
    (pa.struct([("tags", TEXT_MAP)]), {"tags": PERSONAL_MAP}, "'details.tags' key 'dob'"),
    (pa.list_(TEXT_MAP), [[("run", "R1")], PERSONAL_MAP], "'details' key 'dob'"),
    (pa.map_(pa.string(), TEXT_MAP), [("visit1", PERSONAL_MAP)], "'details' key 'dob'"),
], ids=["map_in_struct", "list_of_maps", "map_of_maps"])
def test_personal_data_in_the_keys_of_a_nested_map_is_refused(tmp_path, type_, value, named):
    refused = _refusal(tmp_path, details=(type_, value))
    assert refused.rule == "no_personal_data"
    assert named in str(refused)


def test_personal_data_in_the_fields_of_a_map_value_is_refused(tmp_path):
    refused = _refusal(tmp_path, details=(pa.map_(pa.string(), pa.struct([("dob", pa.date32())])),
                                          [("visit1", {"dob": dt.date(1950, 1, 2)})]))
    assert refused.rule == "no_personal_data"
    assert "column(s) 'details.dob' look like personal data" in str(refused)


def test_a_map_column_with_harmless_keys_is_not_refused_for_personal_data(tmp_path):
    path = write_delivery(tmp_path, "treg", "treg_batch01.parquet",
                          [treg("S002", extra=[("lab", "Glasgow"), ("gene_name", "CD3E")])], extra=TEXT_MAP)
    try:
        check_delivery(path, TREG_FILE, load_contracts()["treg"])
    except DeliveryRejected as refused:
        assert refused.rule != "no_personal_data", refused


def test_a_build_refuses_a_delivery_with_personal_map_keys_and_stores_none_of_it(tmp_path):
    landing = tmp_path / "landing"
    write_reference(landing)
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002", cd4=612.5, extra=PERSONAL_MAP)],
                   extra=TEXT_MAP)
    built = run_build(landing, tmp_path / "mirocals.duckdb")
    record = built.dicts("select * from audit.reconciliation where file_name = ?", [TREG_FILE])[0]
    assert (record["status"], record["rule"]) == ("rejected", "no_personal_data"), record
    assert "'extra' key 'dob', 'extra' key 'name' look like personal data" in record["reason"]
    text = warehouse_text(built.warehouse)
    for value in ("Jean Dupontellier", "1950-01-02", "612.5"):
        assert columns_containing(text, value) == [], value


def test_a_file_exported_without_its_header_row_is_refused_without_repeating_its_first_row(tmp_path):
    """Its first row is read as the column names: a subject's name and birth date, a sample's
    Treg count. The refusal says the header looks lost and repeats none of them."""
    landing = tmp_path / "landing"
    write_reference(landing)
    subjects = ["MIROCALS-FR01-0003", "FR01", "M", "61", "LIMB", "DUPONTXX Jean", "1956-03-02"]
    tregs = ["S8889858", "976.8", "88.7766", "9.0881", "TREG-v1", "2017-07-15"]
    for folder, names in (("reference/subjects/subjects_export_20190601.parquet", subjects),
                          ("labs/treg/treg_batch02.parquet", tregs)):
        (landing / folder).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({name: [f"second row {i}"] for i, name in enumerate(names)}), landing / folder)
    warehouse = tmp_path / "wh" / "mirocals.duckdb"
    built = run_build(landing, warehouse)
    reasons = dict(built.rows("select file_name, reason from audit.delivery where status = 'rejected'"))
    assert set(reasons) == {"reference/subjects/subjects_export_20190601.parquet", "labs/treg/treg_batch02.parquet"}
    assert all("so their names are not repeated here: was the file exported without its header row?" in reason
               for reason in reasons.values())
    text = warehouse_text(warehouse)
    for value in ("MIROCALS-FR01-0003", "DUPONTXX Jean", "1956-03-02", "S8889858", "976.8", "88.7766", "9.0881"):
        assert columns_containing(text, value) == [], value


def test_a_renamed_column_is_still_named_in_the_refusal(tmp_path):
    landing = tmp_path / "landing"
    path = write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002")])
    table = pq.read_table(path)
    pq.write_table(table.rename_columns(["cd4_cells_per_ul" if n == "cd4_count" else n for n in table.column_names]), path)
    with pytest.raises(DeliveryRejected, match=r"Unexpected column\(s\) present: 'cd4_cells_per_ul' \(renamed\?\)"):
        check_delivery(path, "labs/treg/treg_batch01.parquet", load_contracts()["treg"])


def test_a_birth_date_delivered_in_the_age_column_is_not_quoted_by_the_refusal(tmp_path):
    landing = tmp_path / "landing"
    write_reference(landing)
    export = landing / "reference/subjects/subjects_export_20190601.parquet"
    table = pq.read_table(landing / "reference/subjects/subjects_export_20190101.parquet")
    ages = pa.array(["61", "1929-11-30", "58"])
    pq.write_table(table.set_column(table.column_names.index("age"), "age", ages), export)
    warehouse = tmp_path / "wh" / "mirocals.duckdb"
    built = run_build(landing, warehouse)
    assert built.scalar("select reason from audit.delivery where file_name = ?", [export.relative_to(landing).as_posix()]
                        ).endswith("values that cannot be read as INTEGER without changing them: row 2 (values not "
                                   "shown: data about a person).")
    assert columns_containing(warehouse_text(warehouse), "1929-11-30") == []
