import numpy as np
import pandas as pd
import pytest

from toolkit.analysis.accuracy import accuracy_table
from toolkit.analysis.latency import fit_e2e, fit_ttft
from toolkit.errors import ParameterError
from toolkit.schema import REQUEST_COLUMNS, coerce_requests, empty_requests
from toolkit.testing.synthetic import API_MODEL, LATENCY, LOCAL_MODEL, MAX_CONFIGS, configs, synthetic_requests


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic_requests(24_000, seed=3)


def test_columns_and_dtypes_are_the_design_ones(table):
    assert tuple(table.columns) == REQUEST_COLUMNS
    assert table.dtypes.to_dict() == empty_requests().dtypes.to_dict()
    assert coerce_requests(table.head(200)).equals(table.head(200))  # the slow path agrees


def test_rows_keys_errors_and_reproducibility(table):
    assert len(table) == 24_000 and table["request_id"].is_unique
    assert sorted(table["sequence"]) == list(range(24_000))
    keys = table.groupby("config_id")[["dataset", "item_id", "repeat"]].apply(
        lambda part: frozenset(map(tuple, part.to_numpy())))
    assert keys.nunique() == 1 and len(keys) == 24  # every config answers the same keys
    assert table.groupby(["config_id", "dataset", "item_id"]).size().max() == 3  # repeats
    errors = table[table["status"] == "error"]
    assert 0.005 < len(errors) / len(table) < 0.015
    assert errors[["ttft_s", "e2e_s", "correct", "completion_tokens"]].isna().all().all()
    assert errors["error_type"].notna().all() and table.loc[table["status"] == "ok", "error_type"].isna().all()
    assert synthetic_requests(500, seed=3, n_configs=5).equals(synthetic_requests(500, seed=3, n_configs=5))


def test_local_model_has_no_server_time_and_short_gap_lists(table):
    ok = table[(table["status"] == "ok") & ~table["cache_hit"].astype(bool)]
    assert ok.loc[ok["model"] == LOCAL_MODEL, "server_s"].isna().all()
    assert ok.loc[ok["model"] == API_MODEL, "server_s"].notna().all()
    gaps = ok["tbt_s"].map(len)
    assert gaps.max() <= 16 and (gaps >= np.minimum(4, ok["completion_tokens"] - 1)).all()


@pytest.mark.parametrize("model", [API_MODEL, LOCAL_MODEL])
def test_robust_fits_recover_the_injected_slopes(table, model):
    truth = LATENCY[model]
    served = table[(table["model"] == model) & ~table["cache_hit"].astype(bool)]
    ttft, e2e = fit_ttft(served).iloc[0], fit_e2e(served).iloc[0]
    assert ttft["slope"] == pytest.approx(truth.prefill_s_per_token, rel=0.05)
    assert ttft["slope_low"] < truth.prefill_s_per_token < ttft["slope_high"]
    assert e2e["slope"] == pytest.approx(truth.decode_s_per_token, rel=0.05)


def test_accuracy_depends_on_the_config(table):
    accuracy = accuracy_table(table, by=["model", "prompt_variant"]).set_index(["model", "prompt_variant"])
    for variant in ("zero_shot", "few_shot_5", "chat"):
        assert accuracy.loc[(API_MODEL, variant), "accuracy_low"] > accuracy.loc[(LOCAL_MODEL, variant),
                                                                                  "accuracy_high"]
    assert accuracy.loc[(API_MODEL, "few_shot_5"), "accuracy"] > accuracy.loc[(API_MODEL, "zero_shot"), "accuracy"]


def test_config_grid_is_bounded():
    assert len({c.config_id for c in configs(MAX_CONFIGS)}) == MAX_CONFIGS
    with pytest.raises(ParameterError, match=f"n_configs must be in \\[1, {MAX_CONFIGS}\\], got 41"):
        synthetic_requests(10, n_configs=41)


def test_a_synthetic_run_written_in_chunks_has_unique_ids_and_one_send_order(tmp_path):
    import pyarrow.parquet as pq

    from toolkit.testing.synthetic import write_synthetic_parquet

    path = write_synthetic_parquet(tmp_path / "requests.parquet", 2_500, chunk_rows=1_000)
    table = pq.read_table(path).to_pandas()
    assert len(table) == 2_500 and table["request_id"].is_unique
    assert sorted(table["sequence"]) == list(range(2_500))
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    assert (table.sort_values("sequence")["started_at"].diff().dropna() > pd.Timedelta(0)).all()
