import shutil

import pandas as pd
import pytest

from public_data import PUBLIC
from toolkit.errors import DataFileError
from toolkit.importers.frugalgpt import exact_match, import_frugalgpt, load_reported_costs, normalize_answer
from toolkit.importers.frugalgpt_summary import load_reference_points

FRUGALGPT = PUBLIC / "frugalgpt"


@pytest.fixture
def per_query(tmp_path):
    """A per-query file in FrugalGPT's release format, built on six real HEADLINES test queries."""
    queries = pd.read_csv(FRUGALGPT / "queries" / "HEADLINES" / "test.csv", header=None,
                          names=["query", "ref_answer", "_id"]).head(6)
    cheap = pd.DataFrame({"_id": queries["_id"], "ref_answer": queries["ref_answer"],
                          "answer": [f" {a.upper()}." for a in queries["ref_answer"][:4]] + ["none", ""],
                          "cost": 1e-5, "model": "togetherai/google/gemma-2-9b-it"})
    strong = cheap.assign(answer=queries["ref_answer"], cost=3e-3, model="openaichat/gpt-4-turbo")
    path = tmp_path / "HEADLINES.csv"
    pd.concat([cheap, strong]).to_csv(path, index=False)
    return path, queries


def test_exact_match_normalises_like_frugalgpt():
    assert normalize_answer("  The  Answer: UP!") == "answer up"
    assert exact_match("Up.", "up") and exact_match("the down", "down")
    assert not exact_match("neutral", "none") and not exact_match("", "up")


def test_per_query_rows(per_query):
    path, queries = per_query
    table, manifest = import_frugalgpt(path)
    assert len(table) == 12 and (table["dataset"] == "HEADLINES").all()
    cheap = table[table["config_id"] == "togetherai/google/gemma-2-9b-it"]
    expected_cheap = [True] * 4 + [queries["ref_answer"][4] == "none", False]
    assert cheap["correct"].tolist() == expected_cheap
    assert cheap["score"].tolist() == [float(c) for c in expected_cheap]
    assert (cheap["model"].iloc[0], cheap["endpoint"].iloc[0]) == ("google/gemma-2-9b-it", "togetherai")
    assert cheap["item_id"].tolist() == queries["_id"].astype(str).tolist()
    strong = table[table["config_id"] == "openaichat/gpt-4-turbo"]
    assert strong["correct"].all() and (strong["expected"] == strong["output_text"]).all()
    assert table["request_id"].iloc[0] == f"HEADLINES/togetherai/google/gemma-2-9b-it/{queries['_id'][0]}"
    assert manifest["reported_usd_per_query"] == pytest.approx(
        {"togetherai/google/gemma-2-9b-it": 1e-5, "openaichat/gpt-4-turbo": 3e-3})


def test_reported_costs_join_the_table(per_query):
    path, _ = per_query
    table, _ = import_frugalgpt(path, dataset="headlines")
    costs = load_reported_costs(path, dataset="headlines")
    joined = table.merge(costs[["request_id", "usd"]], on="request_id", validate="one_to_one")
    assert len(joined) == 12 and joined["usd"].sum() == pytest.approx(6 * 1e-5 + 6 * 3e-3)


def write(tmp_path, text):
    path = tmp_path / "q.csv"
    path.write_text(text)
    return path


def test_non_numeric_cost_and_missing_fields(tmp_path):
    path = write(tmp_path, "_id,answer,ref_answer,cost,model\n1,up,up,0.1,a/b\n2,up,up,cheap,a/b\n")
    with pytest.raises(DataFileError) as caught:
        import_frugalgpt(path)
    assert str(caught.value) == f"{path} line 3: field \"cost\": not a number ('cheap')"
    path = write(tmp_path, "_id,answer,ref_answer,cost,model\n1,up,,0.1,a/b\n")
    with pytest.raises(DataFileError, match='line 2: field "ref_answer": is missing'):
        import_frugalgpt(path)
    path = write(tmp_path, "_id,answer,cost,model\n1,up,0.1,a/b\n")
    with pytest.raises(DataFileError, match="required column.s. missing: ref_answer"):
        import_frugalgpt(path)


def test_duplicate_query_for_one_model(tmp_path):
    path = write(tmp_path, "_id,answer,ref_answer,cost,model\n1,up,up,0.1,a/b\n1,up,up,0.1,a/b\n")
    with pytest.raises(DataFileError, match="duplicate request id 'q/a/b/1'"):
        import_frugalgpt(path)


def test_published_points_headlines():
    points = load_reference_points(FRUGALGPT / "summary_HEADLINES_e8_full_2024.csv")
    assert len(points) == 30 and (points["kind"] == "published").all() and (points["n"] == 5000).all()
    best = points[points["method"] != "FrugalGPT"].sort_values("accuracy").iloc[-1]
    assert (best["method"], best["provider"], best["accuracy"]) == ("gpt-4-turbo", "openaichat", 0.8558)
    assert best["usd_per_query"] == pytest.approx(0.003330555) and pd.isna(best["budget"])
    cascade = points[points["method"] == "FrugalGPT"].iloc[1]
    assert (cascade["accuracy"], cascade["usd_per_1k"]) == (0.8698, pytest.approx(0.192122))
    assert cascade["budget"] == pytest.approx(0.000226726) and cascade["dataset"] == "HEADLINES"


def test_perf_seed_files_are_refused_and_renamed_summaries_need_a_dataset(tmp_path):
    with pytest.raises(DataFileError, match="mix cost units"):
        load_reference_points(FRUGALGPT / "sciq_e8_perf_seed_9_2024updatedmodel.csv")
    renamed = tmp_path / "sciq.csv"
    shutil.copy(FRUGALGPT / "summary_SCIQ_e8_full_2024.csv", renamed)
    assert set(load_reference_points(renamed, dataset="SCIQ")["dataset"]) == {"SCIQ"}


def test_summary_with_a_bad_cell(tmp_path):
    path = tmp_path / "summary_X_e8_full_2024.csv"
    path.write_text(",Test_acc,Test_cost,Test_size,Train_acc,Train_cost,Train_size,Budget,Method,"
                    "Provider,Marker\n0,high,0.1,10,0.5,0.1,10,10,m,p,1\n")
    with pytest.raises(DataFileError, match="line 2: field \"Test_acc\": not a number"):
        load_reference_points(path)
