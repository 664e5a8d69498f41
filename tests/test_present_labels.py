"""Configuration names are built from the setting columns, never parsed from config_id."""
import numpy as np
import pandas as pd

from toolkit import present
from toolkit.analysis import accuracy
from toolkit.schema import coerce_requests


def settings_frame(configs: dict[str, dict]) -> pd.DataFrame:
    rows = [{"config_id": config_id, "model": "gemma", "temperature": 0.0, "endpoint_name": "embedded",
             "logprobs": False, "response_cache": False, "stop_sequences": True, **settings}
            for config_id, settings in configs.items()]
    return coerce_requests(pd.DataFrame(rows))


# config ids deliberately say nothing: a name must come from the columns
GRID = {"id-1": {"prompt_variant": "few_shot_5", "max_tokens": 16, "stop_sequences": False, "concurrency": 4,
                 "response_cache": True},
        "id-2": {"prompt_variant": "few_shot_5", "max_tokens": 16, "stop_sequences": False, "concurrency": 1},
        "id-3": {"prompt_variant": "zero_shot", "max_tokens": 8, "concurrency": 1},
        "id-4": {"prompt_variant": "zero_shot", "max_tokens": 8, "concurrency": 1, "response_cache": True}}


def test_names_keep_only_the_settings_that_vary():
    labels = present.config_labels(settings_frame(GRID))
    assert dict(labels) == {"id-1": "few_shot_5 · mt16-nostop · c4 · cache", "id-2": "few_shot_5 · mt16-nostop · c1",
                            "id-3": "zero_shot · mt8 · c1", "id-4": "zero_shot · mt8 · c1 · cache"}
    assert labels.shared == ("embedded", "gemma", "T0")
    text = present.labels_text(labels)
    assert "all share embedded / gemma / T0" in text and "**few_shot_5 · mt16-nostop · c4 · cache** is `id-1`" in text
    assert "mt16-nostop = at most 16 output tokens, no stop sequences" in text and "c4 = 4 requests in flight" in text
    assert "cache = response cache on" in text and "T0 = temperature 0" in text


def test_open_loop_rate_endpoint_and_logprobs_are_named_when_they_vary():
    base = {"prompt_variant": "p", "max_tokens": 8, "concurrency": 32}
    labels = present.config_labels(settings_frame({
        "a": {**base, "arrival_rate_per_s": 2.0, "endpoint_name": "local"},
        "b": {**base, "arrival_rate_per_s": 4.0, "endpoint_name": "api", "logprobs": True}}))
    assert dict(labels) == {"a": "local · r2", "b": "api · r4 · logprobs"}


def test_unknown_settings_empty_or_colliding_names_keep_the_config_id():
    imported = coerce_requests(pd.DataFrame({"config_id": ["gpt-4o", "claude"], "model": [None, None]}))
    assert dict(present.config_labels(imported)) == {"gpt-4o": "gpt-4o", "claude": "claude"}
    assert present.labels_text(present.config_labels(imported)) == ""
    one = settings_frame({"only": {"prompt_variant": "p", "max_tokens": 8, "concurrency": 1}})
    assert dict(present.config_labels(one)) == {"only": "only"}
    # two configs whose settings agree (they differ in something the table has no column for)
    twins = settings_frame({"x": {"prompt_variant": "p", "max_tokens": 8, "concurrency": 1},
                            "y": {"prompt_variant": "p", "max_tokens": 8, "concurrency": 1},
                            "z": {"prompt_variant": "q", "max_tokens": 8, "concurrency": 1}})
    assert dict(present.config_labels(twins)) == {"x": "x", "y": "y", "z": "q"}


def test_relabel_renames_ids_in_every_id_column():
    labels = present.config_labels(settings_frame(GRID))
    ids = list(GRID)
    table = pd.DataFrame({"config_a": ids[:2], "config_b": ids[2:], "better": [ids[2], None]})
    out = present.relabel(table, labels)
    assert out["config_a"].tolist() == ["few_shot_5 · mt16-nostop · c4 · cache", "few_shot_5 · mt16-nostop · c1"]
    assert out["better"].iloc[0] == "zero_shot · mt8 · c1" and pd.isna(out["better"].iloc[1])
    assert table["config_a"].tolist() == ids[:2]  # a copy


def answer_frame() -> pd.DataFrame:
    rows = []
    correct = {("p1", 1, False): [1, 0, 1], ("p1", 4, False): [1, 0, 1], ("p1", 4, True): [1, 0, 1],
               ("p2", 1, False): [1, 1, 1], ("p2", 4, False): [0, 1, 1]}
    for (variant, level, cache), outcomes in correct.items():
        for item, ok in enumerate(outcomes):
            rows.append({"config_id": f"{variant}-{level}-{cache}", "model": "m", "prompt_variant": variant,
                         "concurrency": level, "response_cache": cache, "dataset": "d", "item_id": str(item),
                         "repeat": 0, "status": "ok", "correct": bool(ok), "score": float(ok)})
    return coerce_requests(pd.DataFrame(rows))


def test_answer_groups_join_configs_that_answered_identically_and_are_named_by_what_they_share():
    frame = answer_frame()
    frame = present.relabel(frame, present.config_labels(frame))
    groups = present.name_answer_groups(accuracy.answer_groups(frame))
    assert groups["answers"].tolist() == ["p1", "p1", "p1", "p2 · c1", "p2 · c4"]
    assert groups["members"].tolist() == [3, 3, 3, 1, 1]
    assert groups["variants"].iloc[0] == "c1, c4, c4 · cache"
    members = present.group_members(groups)
    assert members.to_dict("list") == {"config_id": ["p1", "p2 · c1", "p2 · c4"], "members": [3, 1, 1],
                                       "variants": ["c1, c4, c4 · cache", "", ""]}
    distinct = accuracy.one_per_answer_group(frame, groups).df()
    assert sorted(distinct["config_id"].unique()) == ["p1", "p2 · c1", "p2 · c4"] and len(distinct) == 9
    # a failed request is no answer: the config that failed on an item no longer matches the others
    failed = frame.assign(status=np.where((frame["config_id"] == "p1 · c1") & (frame["item_id"] == "1"),
                                          "error", "ok"))
    failed.loc[failed["status"] == "error", "correct"] = None
    assert accuracy.answer_groups(failed)["members"].tolist()[:3] == [1, 2, 2]


def test_shared_parts():
    assert present.shared_parts(["a · b · c", "a · c"]) == ("a · c", ["b", ""])
    assert present.shared_parts([]) == ("", [])


def test_hue_latency_groups_and_names():
    table = pd.DataFrame({"model": ["m", "m"], "prompt_variant": ["a", "b"], "concurrency": [1, 4]})
    assert present.hue_column(table) == "prompt_variant"
    assert present.hue_column(table.assign(prompt_variant="a", concurrency=1)) is None
    assert present.latency_groups(table)["group"].tolist() == ["concurrency 1", "concurrency 4"]
    two = table.assign(model=["x", "y"])
    assert present.latency_groups(two)["group"].tolist() == ["x · concurrency 1", "y · concurrency 4"]
    assert present.latency_groups(table.assign(concurrency=1))["group"].tolist() == ["m", "m"]
    assert present.latency_name("p95_e2e_s") == "p95 end-to-end latency"
    assert present.latency_name("p50_ttft_s") == "p50 time to first token"


def test_load_groups_are_named_by_the_settings_that_vary():
    sweep = pd.DataFrame({"endpoint": ["h", "h", "h"], "model": ["m", "m", "m"], "prompt_variant": ["a", "a", "b"],
                          "max_tokens": [8, 8, 8], "stop_sequences": [True, True, False],
                          "response_cache": [False, False, False], "concurrency": [1, 4, 1]})
    named = present.name_load_groups(sweep)
    assert named["config_group"].tolist() == ["a", "a", "b · nostop"]
    assert present.name_load_groups(sweep.iloc[:2])["config_group"].tolist() == ["m", "m"]
