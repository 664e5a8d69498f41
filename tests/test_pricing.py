import datetime as dt
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toolkit.errors import DataFileError, PriceError
from toolkit.pricing import (DEFAULT_PRICES, MachinePrice, Price, describe, load_price_table, price_requests,
                             resolve_price)
from toolkit.schema import coerce_requests

AS_OF = dt.datetime(2026, 1, 15, tzinfo=dt.UTC)


def requests(*rows: dict) -> pd.DataFrame:
    base = {"config_id": "c", "model": "gpt-4o-mini", "status": "ok", "batch": False, "cache_hit": False,
            "prompt_tokens": 0, "cached_tokens": 0, "completion_tokens": 0, "e2e_s": 1.0, "concurrency": 1}
    return coerce_requests(pd.DataFrame([{**base, **row} for row in rows]))


@pytest.fixture()
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network is off in this test")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_api_price_matches_genai_prices_offline(no_network):
    from genai_prices import Usage, calc_price

    table = load_price_table(as_of=AS_OF)
    frame = requests({"prompt_tokens": 12_000, "cached_tokens": 2_000, "completion_tokens": 700})
    expected = calc_price(Usage(input_tokens=12_000, cache_read_tokens=2_000, output_tokens=700),
                          "gpt-4o-mini", genai_request_timestamp=AS_OF).total_price
    assert price_requests(frame, table).iloc[0] == pytest.approx(float(expected), rel=1e-12)
    matched, price = resolve_price(table, "gpt-4o-mini-2024-07-18")
    assert matched == "openai:gpt-4o-mini" and price.source.startswith("genai-prices 0.2.3 openai/")


def test_token_formula_batch_cache_hit_and_errors():
    price = Price("m", input_usd_per_mtok=2.0, cached_input_usd_per_mtok=0.5, output_usd_per_mtok=8.0,
                  source="test")
    no_cached = Price("n", 2.0, None, 8.0, "test")
    table = load_price_table(overrides={"m": price, "n": no_cached}, use_genai_prices=False)
    frame = requests(
        {"model": "m", "prompt_tokens": 1000, "cached_tokens": 400, "completion_tokens": 100},
        {"model": "m", "prompt_tokens": 1000, "cached_tokens": 400, "completion_tokens": 100, "batch": True},
        {"model": "m", "prompt_tokens": 1000, "completion_tokens": 100, "cache_hit": True},
        {"model": "n", "prompt_tokens": 1000, "cached_tokens": 400, "completion_tokens": 100},
        {"model": "m", "status": "error", "prompt_tokens": None, "cached_tokens": None,
         "completion_tokens": None},
        {"model": "m", "prompt_tokens": None, "completion_tokens": 5},
    )
    usd = price_requests(frame, table)
    full = (600 * 2.0 + 400 * 0.5 + 100 * 8.0) / 1e6
    assert usd.iloc[0] == pytest.approx(full)
    assert usd.iloc[1] == pytest.approx(full * 0.5)
    assert usd.iloc[2] == 0.0
    assert usd.iloc[3] == pytest.approx((1000 * 2.0 + 100 * 8.0) / 1e6)
    assert usd.iloc[4] == 0.0
    assert np.isnan(usd.iloc[5])
    assert usd.name == "usd"


def test_machine_time_is_shared_by_concurrent_requests():
    table = load_price_table(use_genai_prices=False)
    frame = requests({"model": "gemma3-270m-q4_k_m", "e2e_s": 36.0, "concurrency": 2},
                     {"model": "gemma3-270m-q4_k_m", "e2e_s": 36.0, "concurrency": 1, "batch": True},
                     {"model": "gemma3-270m-q4_k_m", "e2e_s": None, "status": "error"})
    usd = price_requests(frame, table)
    assert usd.tolist() == pytest.approx([36 * 0.10 / 3600 / 2, 36 * 0.10 / 3600, 0.0])


def test_default_yaml_prices_the_embedded_model_with_its_source():
    table = load_price_table(DEFAULT_PRICES)
    matched, price = resolve_price(table, "GEMMA3-270M-Q4_K_M")
    assert matched == "gemma3-270m*"
    assert price == MachinePrice(0.10, price.source) and "m7g.large" in price.source
    assert resolve_price(table, "gemma-3-270m-it")[1].usd_per_hour == 0.10
    assert table.batch_discount == 0.5 and table.version == "2026-06; genai-prices 0.2.3"


def test_machine_usd_per_hour_replaces_yaml_rate_and_prices_unknown_models():
    table = load_price_table(machine_usd_per_hour=0.36, use_genai_prices=False)
    frame = requests({"model": "gemma3-270m-q4_k_m", "e2e_s": 10.0},
                     {"model": "my-local-llama", "e2e_s": 10.0})
    assert price_requests(frame, table).tolist() == pytest.approx([0.001, 0.001])
    assert resolve_price(table, "my-local-llama")[1].source == "machine_usd_per_hour argument"


def test_unknown_model_error_says_how_to_price_it():
    table = load_price_table(DEFAULT_PRICES)
    with pytest.raises(PriceError) as caught:
        price_requests(requests({"model": "acme-secret-model-7"}), table)
    message = str(caught.value)
    assert message.startswith("no price for model 'acme-secret-model-7' in price table 'frontier-default'")
    for hint in (str(DEFAULT_PRICES), "input_usd_per_mtok", "usd_per_hour", "machine_usd_per_hour"):
        assert hint in message


def test_overrides_win_over_genai_prices():
    mine = Price("gpt-4o-mini", 1.0, None, 1.0, "our contract")
    table = load_price_table(overrides={"gpt-4o-mini*": mine}, as_of=AS_OF)
    assert resolve_price(table, "gpt-4o-mini") == ("gpt-4o-mini*", mine)


@pytest.mark.parametrize(("text", "line", "field"), [
    ("models:\n  - match: x\n    source: s\n    usd_per_hour: 1\n  - match: y\n    source: s\n"
     "    usd_per_hour: 1\n    color: red\n", 5, "color"),
    ("models:\n  - match: x\n    source: s\n    usd_per_hour: 1\n    input_usd_per_mtok: 1\n"
     "    output_usd_per_mtok: 1\n", 2, "usd_per_hour"),
    ("models:\n  - match: x\n    source: s\n    input_usd_per_mtok: 1\n", 2, "output_usd_per_mtok"),
    ("models:\n  - match: x\n    usd_per_hour: -1\n    source: s\n", 2, "usd_per_hour"),
    ("models:\n  - usd_per_hour: 1\n    source: s\n", 2, "match"),
])
def test_bad_yaml_entry_names_file_line_and_field(tmp_path: Path, text: str, line: int, field: str):
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(DataFileError) as caught:
        load_price_table(path)
    assert (caught.value.path, caught.value.line, caught.value.field) == (str(path), line, field)
    assert str(caught.value).startswith(f'{path} line {line}: field "{field}": ')


def test_describe_lists_the_prices_used():
    table = load_price_table(as_of=AS_OF)
    table_rows = describe(table, ["gemma3-270m-q4_k_m", "gpt-4o-mini", "gpt-4o-mini"])
    assert table_rows["model"].tolist() == ["gemma3-270m-q4_k_m", "gpt-4o-mini"]
    assert table_rows["kind"].tolist() == ["machine", "tokens"]
    assert table_rows.loc[0, "usd_per_hour"] == 0.10 and np.isnan(table_rows.loc[0, "input_usd_per_mtok"])
    assert table_rows.loc[1, ["input_usd_per_mtok", "cached_input_usd_per_mtok",
                              "output_usd_per_mtok"]].tolist() == [0.15, 0.075, 0.6]
    assert set(table_rows["version"]) == {"2026-06; genai-prices 0.2.3"}
    assert table_rows.loc[0, "as_of"] == AS_OF.isoformat()
    assert describe(table)["matched"].tolist() == ["gemma3-270m*", "gemma-3-270m*"]
