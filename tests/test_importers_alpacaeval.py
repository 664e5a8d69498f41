import pandas as pd
import pytest

from public_data import AE1, AE2, HASHES, INSTRUCTIONS, LEADERBOARDS, OUTPUT_CHARS, PER_ITEM_COLUMNS, write_alpacaeval
from toolkit.errors import DataFileError
from toolkit.importers.alpacaeval import import_alpacaeval

HEADER = ",".join(PER_ITEM_COLUMNS) + "\n"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_alpacaeval(tmp_path_factory.mktemp("alpacaeval")).parent


@pytest.fixture(scope="module")
def imported(folder):
    return import_alpacaeval(folder / "per_item.csv")


def row(table, dataset, model, item):
    return table.set_index("request_id").loc[f"{dataset}/{model}/{item}"]


def test_rows(folder, imported):
    table, manifest = imported
    assert len(table) == 4 * 6 + 3 * 6 and table["request_id"].is_unique
    first = row(table, "alpacaeval-gpt4", "gpt4_1106_preview", HASHES[0])
    assert (first["score"], first["correct"], first["grader"]) == (1.0, True, AE1)
    # tokens are estimated as characters / 4: model_output_chars, and instruction_chars from instructions.csv
    assert (first["completion_tokens"], first["prompt_tokens"]) == (round(2049 / 4), round(len(INSTRUCTIONS[0][1]) / 4))
    assert (first["config_id"], first["item_id"], first["repeat"]) == ("gpt4_1106_preview", HASHES[0], 0)
    assert first["usage_source"] == "estimated" and pd.isna(first["ttft_s"])
    loss = row(table, "alpacaeval-gpt4", "jina-chat", HASHES[0])
    assert (loss["score"], loss["correct"]) == (0.0, False)
    weighted = row(table, "alpacaeval-gpt4-turbo-weighted", "claude-2", HASHES[5])
    assert weighted["score"] == 0.4375 and not weighted["correct"] and weighted["grader"] == AE2
    assert row(table, "alpacaeval-gpt4-turbo-weighted", "claude-2", HASHES[3])["correct"]  # 0.75
    assert manifest["reference_models"] == {AE1: "text_davinci_003", AE2: "gpt4_1106_preview"}
    assert [s["path"] for s in manifest["source_files"]] == [str(folder / "per_item.csv"),
                                                             str(folder / "instructions.csv")]


def test_draws_and_unparsed_verdicts(imported):
    table, _ = imported
    draw = row(table, "alpacaeval-gpt4", "gpt4_1106_preview", HASHES[4])
    assert draw["score"] == 0.5 and not draw["correct"]
    unparsed = row(table, "alpacaeval-gpt4", "claude-2", HASHES[5])
    assert unparsed["status"] == "ok" and pd.isna(unparsed["score"]) and pd.isna(unparsed["correct"])
    assert unparsed["completion_tokens"] == round(OUTPUT_CHARS["claude-2"][5] / 4)
    assert table["score"].isna().sum() == 1


@pytest.mark.parametrize("dataset", list(LEADERBOARDS))
def test_mean_score_is_the_leaderboard_win_rate(folder, imported, dataset):
    table, _ = imported
    published = pd.read_csv(folder / LEADERBOARDS[dataset], index_col=0)
    scores = table[table["dataset"] == dataset].groupby("config_id")["score"]
    common = scores.mean().index.intersection(published.index)
    # every model with per-item rows is on the leaderboard; guanaco-65b is there without them
    assert len(common) == scores.ngroups and "guanaco-65b" not in common
    published = published.loc[common]
    assert (scores.mean()[common] * 100 - published["win_rate"]).abs().max() < 1e-9
    assert (scores.sem()[common] * 100 - published["standard_error"]).abs().max() < 1e-9
    assert scores.count()[common].tolist() == published["n_total"].tolist()
    wins = table[table["dataset"] == dataset].groupby("config_id")["correct"].sum()
    assert wins[common].tolist() == published["n_wins"].tolist()


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
