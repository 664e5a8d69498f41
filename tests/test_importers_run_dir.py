import pandas as pd
import pytest

from public_data import PUBLIC, write_alpacaeval
from toolkit.errors import ParameterError
from toolkit.importers import IMPORTERS, import_llmperf, import_to_run_dir
from toolkit.schema import LABEL_COLUMNS
from toolkit.store import DERIVED_COLUMNS, load_run, read_manifest


def test_registry_names_every_requests_importer():
    assert sorted(IMPORTERS) == ["alpacaeval", "azure2023", "frugalgpt", "generic", "helicone", "langfuse",
                                 "langsmith", "llmperf", "mooncake", "openai_batch", "otel"]


def test_an_import_round_trips_through_a_run_dir(tmp_path):
    source = PUBLIC / "llmperf" / "individual" / "lepton_70b.json"
    run_dir = import_to_run_dir("llmperf", source, tmp_path / "lepton-dec2023")
    loaded = load_run(run_dir)
    direct, _ = import_llmperf(source, run_id="lepton-dec2023")
    # label columns come back as categoricals of the same values
    assert isinstance(loaded["model"].dtype, pd.CategoricalDtype)
    as_text = loaded.drop(columns=list(DERIVED_COLUMNS)).astype({name: "string" for name in LABEL_COLUMNS})
    pd.testing.assert_frame_equal(as_text, direct)
    manifest = read_manifest(run_dir)
    assert manifest["run_id"] == "lepton-dec2023" and manifest["importer"]["kind"] == "llmperf"
    assert manifest["source_files"][0]["path"] == str(source)
    assert len(manifest["source_files"][0]["sha256"]) == 64


def test_explicit_run_id_and_unknown_kind(tmp_path):
    run_dir = import_to_run_dir("alpacaeval", write_alpacaeval(tmp_path / "alpacaeval"), tmp_path / "ae",
                                run_id="alpaca")
    loaded = load_run(run_dir)
    assert set(loaded["run_id"]) == {"alpaca"} and len(loaded) == 42
    with pytest.raises(ParameterError, match="unknown importer 'promptfoo'; known: alpacaeval"):
        import_to_run_dir("promptfoo", "x", tmp_path / "p")
