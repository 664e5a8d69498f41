from pathlib import Path

import pandas as pd
import pytest

from toolkit.errors import DataFileError
from toolkit.importers.alpacaeval import import_alpacaeval

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "alpacaeval"
PER_ITEM = SHARED / "per_item.csv"
HEADER = ("annotator,reference_model,model,instruction_idx,instruction_hash,dataset,preference,"
          "model_output_chars,reference_output_chars,annotator_price_usd\n")


@pytest.fixture(scope="module")
def imported():
    return import_alpacaeval(PER_ITEM)


def row(table, dataset, model, item):
    return table.set_index("request_id").loc[f"{dataset}/{model}/{item}"]


def test_real_rows(imported):
    table, manifest = imported
    assert len(table) == 55539 and table["request_id"].is_unique
    first = row(table, "alpacaeval-gpt4", "alpaca-7b-neft", "fb5e4d4705fb")
    assert (first["score"], first["correct"], first["grader"]) == (1.0, True, "alpaca_eval_gpt4")
    assert (first["completion_tokens"], first["prompt_tokens"]) == (round(627 / 4), round(80 / 4))
    assert (first["config_id"], first["item_id"], first["repeat"]) == ("alpaca-7b-neft", "fb5e4d4705fb", 0)
    assert first["usage_source"] == "estimated" and pd.isna(first["ttft_s"])
    weighted = row(table, "alpacaeval-gpt4-turbo-weighted", "alpaca-farm-ppo-human", "b2da2eb6dcc9")
    assert weighted["score"] == pytest.approx(0.00031) and not weighted["correct"]
    assert manifest["reference_models"] == {"alpaca_eval_gpt4": "text_davinci_003",
                                            "weighted_alpaca_eval_gpt4_turbo": "gpt4_1106_preview"}


def test_draws_and_unparsed_verdicts(imported):
    table, _ = imported
    draw = row(table, "alpacaeval-gpt4", "alpaca-farm-ppo-human", "6fbfb2866d07")
    assert draw["score"] == 0.5 and not draw["correct"]
    unparsed = row(table, "alpacaeval-gpt4", "alpaca-7b-neft", "a622789731a5")
    assert unparsed["status"] == "ok" and pd.isna(unparsed["score"]) and pd.isna(unparsed["correct"])
    assert table["score"].isna().sum() == 52


@pytest.mark.parametrize("dataset, leaderboard", [
    ("alpacaeval-gpt4", "alpaca_eval_gpt4_leaderboard.csv"),
    ("alpacaeval-gpt4-turbo-weighted", "weighted_alpaca_eval_gpt4_turbo_leaderboard.csv"),
])
def test_mean_score_is_the_leaderboard_win_rate(imported, dataset, leaderboard):
    table, _ = imported
    published = pd.read_csv(SHARED / leaderboard, index_col=0)["win_rate"]
    ours = table[table["dataset"] == dataset].groupby("config_id")["score"].mean() * 100
    common = ours.index.intersection(published.index)
    assert len(common) >= 30
    assert (ours[common] - published[common]).abs().max() < 1e-3


def write(tmp_path, body, name="per_item.csv"):
    path = tmp_path / name
    path.write_text(HEADER + body)
    return path


def test_without_instructions_there_are_no_prompt_tokens(tmp_path):
    path = write(tmp_path, "alpaca_eval_gpt4,text_davinci_003,m1,0,aaa,koala,2,400,10,0.01\n")
    table, manifest = import_alpacaeval(path)
    assert pd.isna(table["prompt_tokens"].iloc[0]) and table["completion_tokens"].iloc[0] == 100
    assert any("no instructions.csv" in note for note in manifest["notes"])


def test_non_numeric_preference_names_line_and_field(tmp_path):
    path = write(tmp_path, "alpaca_eval_gpt4,r,m1,0,aaa,koala,2,400,10,0.01\n"
                           "alpaca_eval_gpt4,r,m1,1,bbb,koala,better,400,10,0.01\n")
    with pytest.raises(DataFileError) as caught:
        import_alpacaeval(path)
    assert str(caught.value) == f"{path} line 3: field \"preference\": not a number ('better')"


def test_preference_out_of_range(tmp_path):
    path = write(tmp_path, "alpaca_eval_gpt4,r,m1,0,aaa,koala,0,400,10,0.01\n")
    with pytest.raises(DataFileError, match=r'line 2: field "preference": must lie in \[1, 2\], got 0.0'):
        import_alpacaeval(path)


def test_missing_required_value_and_column(tmp_path):
    path = write(tmp_path, "alpaca_eval_gpt4,r,,0,aaa,koala,2,400,10,0.01\n")
    with pytest.raises(DataFileError, match='line 2: field "model": is missing'):
        import_alpacaeval(path)
    path = tmp_path / "short.csv"
    path.write_text("annotator,model\nx,y\n")
    with pytest.raises(DataFileError, match="required column.s. missing: instruction_hash, preference"):
        import_alpacaeval(path)


def test_empty_and_header_only_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataFileError, match="the file is empty"):
        import_alpacaeval(empty)
    with pytest.raises(DataFileError, match="header but no rows"):
        import_alpacaeval(write(tmp_path, ""))
