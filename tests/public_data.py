"""Where the tests find public data, and AlpacaEval files written in AlpacaEval's format.

`PUBLIC` is the repo's own `data/public/` (llmperf and FrugalGPT, Apache-2.0, shipped with their
LICENSE and SOURCE.md), found from this file so a fresh clone needs nothing beside it.

AlpacaEval's data is CC BY-NC, so it is not shipped: `write_alpacaeval` writes a small
`per_item.csv`, `instructions.csv` and both leaderboard CSVs with exactly the columns of the real
files (see the README), for 4 models x 6 instructions under the GPT-4 judge (AE1, preferences 1, 2,
the draw 1.5 and one unparsed verdict) and 3 models x 6 instructions under the weighted GPT-4
Turbo judge (AE2, continuous preferences).  The instructions and numbers are made up.  The
leaderboard rows were worked out from the preferences below, apart from any importer, the way
AlpacaEval computes them (checked on the real files): win_rate = mean(preference - 1) x 100 over parsed verdicts,
standard_error = its standard error x 100, n_wins / n_wins_base / n_draws = verdicts above / below /
at 1.5, n_total = parsed verdicts, discrete_win_rate = (n_wins + n_draws / 2) / n_total x 100,
avg_length = mean model_output_chars, truncated.  The length-controlled columns come from a fitted
model upstream and are left empty.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

PUBLIC = Path(__file__).resolve().parents[1] / "data" / "public"

AE1, AE2 = "alpaca_eval_gpt4", "weighted_alpaca_eval_gpt4_turbo"
REFERENCES = {AE1: "text_davinci_003", AE2: "gpt4_1106_preview"}
LEADERBOARDS = {"alpacaeval-gpt4": "alpaca_eval_gpt4_leaderboard.csv",
                "alpacaeval-gpt4-turbo-weighted": "weighted_alpaca_eval_gpt4_turbo_leaderboard.csv"}

PER_ITEM_COLUMNS = ("annotator", "reference_model", "model", "instruction_idx", "instruction_hash", "dataset",
                    "preference", "model_output_chars", "reference_output_chars", "annotator_price_usd")
# (AlpacaEval subset, instruction)
INSTRUCTIONS = [
    ("helpful_base", "Which plays made their lead actors famous on Broadway?"),
    ("koala", "Explain how a bicycle gear works."),
    ("oasst", "Write a haiku about a slow train."),
    ("selfinstruct", "Convert 3 cups of flour to grams."),
    ("vicuna", "What should I pack for a week of hiking in rain?"),
    ("helpful_base", "How do I remove a red wine stain from cotton?"),
]
# AlpacaEval's instruction_hash: the first 12 hex digits of SHA-1 of the instruction text
HASHES = [hashlib.sha1(text.encode("utf-8")).hexdigest()[:12] for _, text in INSTRUCTIONS]

# preference per instruction (1 = reference better, 2 = model better, 1.5 = draw, None = unparsed).
# jina-chat has no published per-token price, so reports must leave it out for lack of a price.
PREFERENCES: dict[str, dict[str, list[float | None]]] = {
    AE1: {
        "gpt4_1106_preview": [2, 2, 2, 2, 1.5, 2],
        "claude-2": [2, 1, 2, 2, 2, None],
        "gpt-3.5-turbo-1106": [2, 1, 1, 2, 1.5, 2],
        "jina-chat": [1, 1, 2, 1, 1, 1],
    },
    AE2: {  # 1 + P(model better) from the judge's logprobs; multiples of 1/16 survive the CSV exactly
        "claude-2": [1.25, 1.375, 1.0625, 1.75, 1.125, 1.4375],
        "gpt-3.5-turbo-1106": [1.125, 1.0625, 1.25, 1, 1.0625, 1],
        "jina-chat": [1.0625, 1, 1, 1.125, 1, 1.0625],
    },
}
OUTPUT_CHARS = {  # a model's outputs are the same under both judges
    "gpt4_1106_preview": [2049, 1830, 640, 410, 2520, 1995],
    "claude-2": [1082, 1200, 96, 387, 1610, 1125],
    "gpt-3.5-turbo-1106": [796, 903, 71, 250, 1190, 830],
    "jina-chat": [296, 410, 58, 120, 505, 311],
}
REFERENCE_CHARS = {AE1: [264, 544, 62, 131, 722, 480], AE2: [2049, 1830, 640, 410, 2520, 1995]}
JUDGE_USD = {AE1: 0.0167, AE2: 0.00098}

# Worked out from PREFERENCES and OUTPUT_CHARS (see the module docstring), e.g. claude-2
# under AE1: verdicts 2, 1, 2, 2, 2 and one unparsed -> 4 wins, 1 loss of 5 -> win_rate 80.
# guanaco-65b has leaderboard rows but no per-item rows, as many models do in the real files.
AE1_LEADERBOARD = """\
,win_rate,standard_error,n_wins,n_wins_base,n_draws,n_total,mode,avg_length,discrete_win_rate,length_controlled_winrate
gpt4_1106_preview,91.66666666666667,8.333333333333334,5,0,1,6,minimal,1574,91.66666666666667,
claude-2,80.0,20.0,4,1,0,5,minimal,916,80.0,
guanaco-65b,71.8,1.58,577,226,2,805,community,1249,71.8,
gpt-3.5-turbo-1106,58.333333333333336,20.06932429798716,3,2,1,6,minimal,673,58.333333333333336,
jina-chat,16.666666666666668,16.666666666666668,1,5,0,6,minimal,283,16.666666666666668,
"""
AE2_LEADERBOARD = """\
,win_rate,standard_error,n_wins,n_wins_base,n_draws,n_total,discrete_win_rate,mode,avg_length,length_controlled_winrate,lc_standard_error
claude-2,33.333333333333336,10.163592431375392,1,5,0,6,16.666666666666668,minimal,916,,
guanaco-65b,3.0,0.6,22,783,0,805,2.7,community,1249,,
gpt-3.5-turbo-1106,8.333333333333334,3.84147685720537,0,6,0,6,0.0,minimal,673,,
jina-chat,4.166666666666667,2.0833333333333335,0,6,0,6,0.0,minimal,283,,
"""


def per_item_rows() -> list[list[object]]:
    rows = []
    for annotator, models in PREFERENCES.items():
        for model, preferences in models.items():
            for idx, (hash_, (subset, _), preference) in enumerate(zip(HASHES, INSTRUCTIONS, preferences)):
                rows.append([annotator, REFERENCES[annotator], model, idx, hash_, subset,
                             "" if preference is None else f"{preference:g}", OUTPUT_CHARS[model][idx],
                             REFERENCE_CHARS[annotator][idx], JUDGE_USD[annotator]])
    return rows


def write_alpacaeval(folder: Path) -> Path:
    """Write per_item.csv (and instructions.csv, the two leaderboards) into `folder`; return per_item.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [",".join(PER_ITEM_COLUMNS)] + [",".join(map(str, row)) for row in per_item_rows()]
    per_item = folder / "per_item.csv"
    per_item.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = ["instruction_idx,instruction_hash,dataset,instruction_chars,instruction"]
    rows += [f'{idx},{hash_},{subset},{len(text)},"{text}"'
             for idx, (hash_, (subset, text)) in enumerate(zip(HASHES, INSTRUCTIONS))]
    (folder / "instructions.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / LEADERBOARDS["alpacaeval-gpt4"]).write_text(AE1_LEADERBOARD, encoding="utf-8")
    (folder / LEADERBOARDS["alpacaeval-gpt4-turbo-weighted"]).write_text(AE2_LEADERBOARD, encoding="utf-8")
    return per_item
