"""The DuckDB read path against what pandas computes on the whole table (the previous path, done here in
the test): the same rows, the same analyses, and fits on a bounded sample inside the full fit's reach."""
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from toolkit import present, pricing, store, warehouse
from toolkit.analysis import accuracy, caching, cascade_study, frontier, latency, latency_fit, latency_model, load
from toolkit.analysis.rows import run_overview, timed_mask
from toolkit.machine_time import machine_seconds
from toolkit.price_table import resolve_price
from toolkit.schema import LABEL_COLUMNS, SETTING_COLUMNS, from_arrow
from toolkit.testing.synthetic import synthetic_requests

ROWS = 100_000
LIGHT = store.columns_but("tbt_s", "output_text", "expected", "prefix_hashes", "prompt_hash")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("warehouse") / "run"
    store.save_run(path, synthetic_requests(ROWS), {"run_id": "synthetic"})
    return path


def labels_as_categories(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its label columns as `load_run` gives them: categoricals of their sorted values."""
    return frame.astype({name: pd.CategoricalDtype(pd.Index(sorted(frame[name].dropna().unique()), dtype="str"))
                         for name in LABEL_COLUMNS if name in frame.columns})


@pytest.fixture(scope="module")
def whole(run_dir):
    """The table as pandas alone reads it: every column of the one Parquet file, machine time over it."""
    frame = from_arrow(pq.read_table(run_dir / store.REQUESTS))
    return labels_as_categories(pd.concat([frame, machine_seconds(frame)], axis=1))


def test_label_columns_are_categoricals_in_the_order_their_text_sorts(run_dir):
    table = store.load_run(run_dir, columns=["config_id", "status", "error_type", "prompt_hash"])
    assert isinstance(table["config_id"].dtype, pd.CategoricalDtype)
    assert list(table["config_id"].cat.categories) == sorted(table["config_id"].astype(str).unique())
    assert table["error_type"].isna().any() and table["error_type"].notna().any()
    assert table["prompt_hash"].dtype == "string"  # a hash per prompt is not a label
    assert table.groupby("config_id").size().index.tolist() == sorted(table["config_id"].astype(str).unique())


def test_one_part_reads_exactly_as_pandas_reads_it(run_dir, whole):
    pd.testing.assert_frame_equal(store.load_run(run_dir), whole)
    pd.testing.assert_frame_equal(store.load_run(run_dir, columns=LIGHT), whole[LIGHT])


def test_parts_and_journals_keep_the_latest_attempt_as_pandas_merging_them_does(tmp_path, whole):
    frame = whole[list(store.REQUEST_COLUMNS)].iloc[:3000]
    retried = frame.iloc[::7].assign(sequence=lambda f: f["sequence"] + ROWS, status="ok", e2e_s=9.0)
    stale = frame.iloc[1::11].assign(sequence=lambda f: f["sequence"] - ROWS, e2e_s=-1.0)
    store.save_run(tmp_path, frame.iloc[:2000], {"run_id": "synthetic"})
    store.write_requests(tmp_path, pd.concat([frame.iloc[2000:], stale]), name=store.part_names("shard-1")[1])
    store.write_requests(tmp_path, retried, name=store.part_names("shard-2")[1])
    # the previous path: concatenate in the run dir's file order, the highest sequence wins, ties to the later file
    merged = pd.concat([from_arrow(pq.read_table(path)) for path in store.run_files(tmp_path)[0]], ignore_index=True)
    expected = labels_as_categories(merged.sort_values("sequence", kind="stable", na_position="first")
                                    .drop_duplicates("request_id", keep="last").sort_index().reset_index(drop=True))
    table = store.load_run(tmp_path, columns=list(store.REQUEST_COLUMNS))
    pd.testing.assert_frame_equal(table, expected)
    assert (table["e2e_s"] != -1.0).all() and (table.set_index("request_id").loc[retried["request_id"], "e2e_s"] == 9.0).all()


def test_settings_a_run_left_null_come_from_its_manifest(tmp_path, whole):
    frame = whole[list(store.REQUEST_COLUMNS)].iloc[:500]
    configs = [{"config_id": config_id, "endpoint": "local", "stop": True, "logprobs": False, "cache": True}
               for config_id in sorted(frame["config_id"].unique())[:-1]]  # the last config is not in the manifest
    store.save_run(tmp_path, frame, {"run_id": "synthetic", "config": {"configs": configs}})
    table = store.load_run(tmp_path, columns=["config_id", *SETTING_COLUMNS, "tbt_count"])
    assert table["tbt_count"].tolist() == [len(gaps) for gaps in frame["tbt_s"].fillna({i: [] for i in frame.index})]
    known = table["config_id"].isin([entry["config_id"] for entry in configs])
    assert (table.loc[known, "endpoint_name"] == "local").all() and table.loc[known, "response_cache"].all()
    assert not table.loc[known, "logprobs"].any() and table.loc[known, "arrival_rate_per_s"].isna().all()
    assert table.loc[~known, list(SETTING_COLUMNS)].isna().all().all() and (~known).any()


def test_latency_analyses_from_gap_sums_equal_those_from_the_gap_lists(run_dir, whole):
    narrow = store.load_run(run_dir, columns=[*LIGHT, "tbt_sum_s", "tbt_count"])
    assert "tbt_s" not in narrow.columns
    for analysis in (latency.decomposition, latency.latency_split, load.load_sweep,
                     lambda f: latency.percentiles(f, metrics=("ttft_s", "e2e_s", "tpot_s", "itl_mean_s")),
                     lambda f: latency.goodput(f, ttft_s=1.0, tpot_s=0.05, e2e_s=3.0)):
        pd.testing.assert_frame_equal(analysis(narrow), analysis(whole), rtol=1e-12)


def test_a_fit_on_a_bounded_sample_stays_within_the_full_fit_interval(tmp_path):
    # 200,000 rows in 4 groups of 50,000; the sample keeps 10,000 of each
    store.save_run(tmp_path, synthetic_requests(200_000, seed=1), {"run_id": "synthetic"})
    full = latency_model.fit_latency_model(store.load_run(tmp_path, columns=list(latency_model.USED)
                                                          + list(latency_model.DEFAULT_BY)))
    sample = store.load_sample(tmp_path, latency_model.USED, by=latency_model.DEFAULT_BY, rows_per_group=10_000)
    assert sample.groupby(list(latency_model.DEFAULT_BY)).size().tolist() == [10_000] * 4
    pd.testing.assert_frame_equal(sample, store.load_sample(tmp_path, latency_model.USED, by=latency_model.DEFAULT_BY,
                                                            rows_per_group=10_000))  # seeded: the same rows again
    fitted = latency_model.fit_latency_model(sample)
    assert fitted["label"].tolist() == full["label"].tolist() and (fitted["n"] < full["n"]).all()
    # each parameter of the full fit lies inside the sample fit's 95% interval, or within 2% of the sample's value:
    # a per-token time's normal-approximation interval is narrower than the sampling spread when the noise grows
    # with the output length (as here), yet the value moves by less than 0.1%; the modelled e2e by less than 1%
    for name, low, high in (("ttft_per_prompt_token_s", "ttft_per_prompt_token_low", "ttft_per_prompt_token_high"),
                            ("overhead_s", "overhead_low", "overhead_high"),
                            ("per_token_s", "per_token_low", "per_token_high")):
        inside = (fitted[low] <= full[name]) & (full[name] <= fitted[high])
        close = (fitted[name] - full[name]).abs() <= 0.02 * full[name].abs()
        assert (inside | close).all(), (name, fitted[[name, low, high]], full[name])
    np.testing.assert_allclose(fitted["e2e_model_s"], full["e2e_model_s"], rtol=0.01)


def test_percentiles_taken_in_duckdb_equal_numpy_on_the_whole_frame(whole):
    got = latency.percentiles(whole, by=("model", "concurrency"), metrics=("ttft_s", "e2e_s", "tpot_s", "itl_s"),
                              q=(0.5, 0.95, 0.99))
    timed = latency.request_metrics(whole[timed_mask(whole)])
    rows = []
    for (model, concurrency), part in timed.groupby(["model", "concurrency"], sort=True):
        gaps = np.concatenate([np.asarray(g, dtype=float) for g in part["tbt_s"] if g is not None and len(g)])
        rows.append({"model": model, "concurrency": concurrency, "n": len(part),
                     **{f"p{100 * p:g}_{m}": np.quantile(part[m].dropna().to_numpy(dtype=float), p)
                        for m in ("ttft_s", "e2e_s", "tpot_s") for p in (0.5, 0.95, 0.99)},
                     **{f"p{100 * p:g}_itl_s": np.quantile(gaps, p) for p in (0.5, 0.95, 0.99)}})
    expected = pd.DataFrame(rows)
    assert got[["model", "concurrency", "n"]].astype(object).equals(expected[["model", "concurrency", "n"]].astype(object))
    value_columns = [c for c in expected.columns if c.startswith("p")]
    np.testing.assert_allclose(got[value_columns].to_numpy(dtype=float), expected[value_columns].to_numpy(dtype=float),
                               rtol=1e-12)


def test_accuracy_counted_in_duckdb_over_the_files_equals_pandas_on_the_whole_frame(run_dir, whole):
    requests = store.open_run(run_dir)  # nothing read yet: each analysis reads its columns from the Parquet file
    table = accuracy.accuracy_table(requests, by=["config_id", "dataset"])
    ok = whole["status"].astype(str).eq("ok")
    graded = ok & whole["correct"].notna()
    keys = [whole["config_id"].astype(str), whole["dataset"].astype(str)]
    want = pd.DataFrame({"n": graded.groupby(keys).sum(), "correct": (graded & whole["correct"].fillna(False).astype(bool))
                         .groupby(keys).sum(), "errors": (~ok).groupby(keys).sum()}).reset_index()
    pd.testing.assert_frame_equal(table[["config_id", "dataset", "n", "correct", "errors"]], want,
                                  check_dtype=False, check_names=False)
    assert table["accuracy"].to_numpy() == pytest.approx((want["correct"] / want["n"]).to_numpy(), rel=1e-12)
    # the same code on the DataFrame gives the same tables
    pd.testing.assert_frame_equal(accuracy.accuracy_table(whole, by=["config_id", "dataset"]), table)
    pd.testing.assert_frame_equal(accuracy.pairwise_significance(whole), accuracy.pairwise_significance(requests))
    overview = run_overview(requests)
    assert overview[["requests", "ok", "graded"]].iloc[0].tolist() == [len(whole), int(ok.sum()), int(graded.sum())]
    # the pairs: items both configs answered, counted from the whole frame
    pairs = accuracy.pairwise_significance(requests).iloc[0]
    key = list(accuracy.PAIR_KEY)
    answered = whole[graded]
    a = answered[answered["config_id"].astype(str) == pairs["config_a"]]
    b = answered[answered["config_id"].astype(str) == pairs["config_b"]]
    merged = a[[*key, "correct"]].merge(b[[*key, "correct"]], on=key, suffixes=("_a", "_b"))
    assert pairs["n_pairs"] == len(merged)
    assert pairs["a_only"] == int((merged["correct_a"].astype(bool) & ~merged["correct_b"].astype(bool)).sum())


def test_costs_counted_in_duckdb_over_the_files_equal_the_same_code_on_the_loaded_frame(run_dir, whole):
    requests = store.open_run(run_dir)  # no machine_s: DuckDB shares each phase's wall time over the whole run
    prices = pricing.price_table_for(requests, 2.0)
    assert pricing.machine_priced(requests, prices) == ["gemma-3-270m-q4_k_m"]
    summary = frontier.config_summary(requests, prices)
    pd.testing.assert_frame_equal(summary, frontier.config_summary(whole, prices), rtol=1e-12)
    pd.testing.assert_frame_equal(frontier.cost_summary(requests, prices), frontier.cost_summary(whole, prices), rtol=1e-12)
    pd.testing.assert_frame_equal(pricing.pricing_rules(requests, prices), pricing.pricing_rules(whole, prices))
    assert present.cache_note(requests) == present.cache_note(whole) != ""
    # the dollars, from the rates by hand: token prices for the API model, the hour's share for the self-hosted one
    api = resolve_price(prices, "gpt-4o-mini")[1]
    ok = whole["status"].astype(str).eq("ok")
    hit = whole["cache_hit"].fillna(False).astype(bool)
    cached = whole["cached_tokens"].fillna(0).astype(float)
    by_tokens = ((whole["prompt_tokens"].astype(float) - cached) * api.input_usd_per_mtok
                 + cached * (api.cached_input_usd_per_mtok if api.cached_input_usd_per_mtok is not None
                             else api.input_usd_per_mtok)
                 + whole["completion_tokens"].astype(float) * api.output_usd_per_mtok) / 1e6
    by_time = whole["machine_s"].astype(float) * 2.0 / 3600
    usd = np.where(whole["model"].astype(str) == "gpt-4o-mini", by_tokens, by_time)
    usd = pd.Series(np.where(hit, 0.0, usd), index=whole.index)
    counted = ok & ~hit & usd.notna()
    assert counted.sum() > 0.5 * len(whole)
    want = usd[counted].groupby(whole.loc[counted, "config_id"].astype(str)).sum()
    mine = frontier.config_summary(store.open_run(run_dir), prices)  # errors add 0 where they have no counts
    got = mine.set_index("config_id")["usd_total"]
    np.testing.assert_allclose(got.loc[want.index].to_numpy(), want.to_numpy(), rtol=1e-3)


def test_cascade_items_are_a_seeded_choice_paired_across_configs(run_dir, whole):
    requests = store.open_run(run_dir)
    prices = pricing.price_table_for(requests, 2.0)
    everything = cascade_study.cascade_rows(requests, prices)
    assert len(everything) == len(whole)  # no dataset has more items than a study holds
    np.testing.assert_allclose(
        everything.groupby("config_id", observed=True)["usd"].sum().to_numpy(),
        cascade_study.request_costs(whole, prices).groupby(whole["config_id"], observed=True).sum().to_numpy(),
        rtol=1e-9)
    few = cascade_study.cascade_rows(requests, prices, items_per_dataset=40)
    per_config = few.groupby(["dataset", "config_id"], observed=True)["item_id"].agg(lambda items: frozenset(items))
    assert per_config.map(len).eq(40).all()  # every config answered each chosen item
    assert per_config.groupby(level="dataset").nunique().eq(1).all()  # ... the same items
    key = ["dataset", "item_id", "repeat", "config_id"]
    again = cascade_study.cascade_rows(requests, prices, items_per_dataset=40)
    assert few.sort_values(key, ignore_index=True).equals(again.sort_values(key, ignore_index=True))
    other = cascade_study.cascade_rows(requests, prices, items_per_dataset=40, seed=1)
    assert set(other["item_id"]) != set(few["item_id"])


def test_caching_levers_counted_in_duckdb_over_the_files_equal_the_same_code_on_the_loaded_frame(run_dir, whole):
    requests = store.open_run(run_dir)
    prices = pricing.price_table_for(requests, 2.0)
    for lever in (lambda rows: caching.response_cache_savings(rows, prices),
                  lambda rows: caching.response_cache_savings(rows, prices, by=[]),
                  lambda rows: caching.prefix_reuse(rows),
                  lambda rows: caching.prompt_caching_savings(rows, prices, by=["model"]),
                  lambda rows: caching.batch_savings(rows, prices, by=["model"], turnaround_s=3600.0)):
        pd.testing.assert_frame_equal(lever(requests), lever(whole), rtol=1e-12)
    cache = caching.response_cache_savings(requests, prices).set_index("config_id")
    ok = whole[whole["status"].astype(str) == "ok"]
    hits = ok["cache_hit"].fillna(False).astype(bool).groupby(ok["config_id"].astype(str)).sum()
    assert cache["hits"].to_dict() == hits[hits.index.isin(cache.index)].to_dict() and hits.sum() > 0
    shown = caching.prefix_reuse_rows(requests, limit=500)
    assert shown["previous_prompt"].value_counts().to_dict() == {"changed prefix": 500, "shared prefix": 500}


def test_quantiles_of_several_values_equal_numpy_per_group_with_ties_nan_and_null_keys(monkeypatch):
    generator = np.random.default_rng(3)
    frame = pd.DataFrame({"key": generator.choice(["a", "b", None], 60_000),
                          "x": np.round(generator.lognormal(size=60_000), 2),  # ties
                          "y": np.where(generator.random(60_000) < 0.1, np.nan, generator.normal(size=60_000))})
    frame.loc[frame["key"] == "b", "y"] = np.nan  # a group without values of y has no row for y
    q = (0.0, 0.01, 0.5, 0.999, 1.0)
    source = warehouse.relation(frame)
    exact = warehouse.quantiles(source, ["key"], {"x": "x", "y": "y * 2"}, q)  # DuckDB's exact quantile
    monkeypatch.setattr(warehouse, "EXACT_QUANTILE_VALUES", 0)  # as past memory: brackets from a t-digest
    monkeypatch.setattr(warehouse, "QUANTILE_BRACKET", 1e-6)  # every bracket misses first and is widened
    found = warehouse.quantiles(source, ["key"], {"x": "x", "y": "y * 2"}, q)
    pd.testing.assert_frame_equal(found, exact, rtol=1e-13)
    assert found[["key", "value"]].astype(object).where(found[["key", "value"]].notna(), None).values.tolist() == [
        ["a", "x"], ["a", "y"], ["b", "x"], [None, "x"], [None, "y"]]
    for row in found.itertuples():
        part = frame[frame["key"].isna()] if row.key is None or pd.isna(row.key) else frame[frame["key"] == row.key]
        values = (part["x"] if row.value == "x" else part["y"] * 2).dropna().to_numpy()
        assert row.n == len(values)
        np.testing.assert_allclose([getattr(row, f"q{i}") for i in range(len(q))], np.quantile(values, q), rtol=1e-13)
    groups = pd.DataFrame({"key": ["a", "b", "c", None]})
    wide = warehouse.with_quantiles(groups, source, ["key"], {"x": "x", "y": "y * 2"}, q,
                                    {"x": ["x_low", "x_mid", "x_p50", "x_high", "x_max"],
                                     "y": ["y0", "y1", "y2", "y3", "y4"]})
    assert wide["key"].tolist() == groups["key"].tolist()  # the table's rows, in its order
    assert wide[["x_low", "x_max", "y2"]].isna().sum().tolist() == [1, 1, 2]  # c has no value, b no y
    np.testing.assert_allclose(wide.loc[wide["key"] == "a", ["y0", "y1", "y2", "y3", "y4"]].to_numpy()[0],
                               found.query("key == 'a' and value == 'y'")[[f"q{i}" for i in range(5)]].to_numpy()[0])


def test_latency_analyses_counted_in_duckdb_over_the_files_equal_the_same_code_on_the_loaded_frame(run_dir, whole):
    requests = store.open_run(run_dir)  # no machine_s: the load sweep shares each phase's wall time over the whole run
    for analysis in (lambda rows: latency.percentiles(rows, metrics=("ttft_s", "e2e_s", "tpot_s", "itl_s")),
                     latency.decomposition, latency.latency_split, load.load_sweep,
                     lambda rows: latency.goodput(rows, ttft_s=1.0, tpot_s=0.05, e2e_s=3.0, by=["model"])):
        pd.testing.assert_frame_equal(analysis(requests), analysis(whole), rtol=1e-12)
    assert latency_fit.observed_range(requests, "completion_tokens") == latency_fit.observed_range(whole, "completion_tokens")


def test_quantiles_of_heavily_tied_values_are_exact_past_the_memory_bound(monkeypatch):
    # token counts: a bracket around a tied value holds a large share of the rows, which come as value counts
    generator = np.random.default_rng(4)
    frame = pd.DataFrame({"key": generator.choice(["a", "b"], 200_000),
                          "tokens": generator.choice([1, 2, 87, 88, 512], 200_000, p=[.05, .05, .5, .3, .1])})
    monkeypatch.setattr(warehouse, "EXACT_QUANTILE_VALUES", 0)
    q = (0.0, 0.3, 0.5, 0.9, 0.99, 1.0)
    found = warehouse.quantiles(warehouse.relation(frame), ["key"], {"tokens": "tokens"}, q)
    for row in found.itertuples():
        np.testing.assert_array_equal([getattr(row, f"q{i}") for i in range(len(q))],
                                      np.quantile(frame.loc[frame["key"] == row.key, "tokens"], q))


def test_a_materialized_chain_is_computed_once_and_dropped_after_the_block():
    source = warehouse.relation(pd.DataFrame({"x": np.arange(1000)}))
    drawn = warehouse.over(source, "SELECT x, random() AS r FROM {rows}")
    temporary = "SELECT count(*) FROM duckdb_tables() WHERE temporary"
    with warehouse.materialized(drawn) as held:
        first, second = held.order("x").df(), held.order("x").df()
        assert warehouse.over(source, temporary).fetchall() == [(1,)]
    pd.testing.assert_frame_equal(first, second)  # random() ran once, not once per read
    assert not drawn.order("x").df()["r"].equals(first["r"])  # the chain itself draws anew
    with pytest.raises(ZeroDivisionError), warehouse.materialized(drawn):
        1 / 0
    assert warehouse.over(source, temporary).fetchall() == [(0,)]


def test_a_chain_past_the_materialized_bound_is_read_as_it_is(monkeypatch):
    source = warehouse.relation(pd.DataFrame({"x": np.arange(1000)}))
    drawn = warehouse.over(source, "SELECT x, random() AS r FROM {rows}")
    monkeypatch.setattr(warehouse, "MATERIALIZED_VALUES", 2 * 1000)  # two columns: exactly 1,000 rows fit
    with warehouse.materialized(drawn) as held:
        assert held.order("x").df().equals(held.order("x").df())
    monkeypatch.setattr(warehouse, "MATERIALIZED_VALUES", 2 * 999)
    with warehouse.materialized(drawn) as held:
        assert held is drawn
        assert warehouse.over(source, "SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchall() == [(0,)]
