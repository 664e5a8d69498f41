import datetime as dt
import math
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toolkit.errors import DataFileError, ParameterError, PriceError
from toolkit.pricing import (DEFAULT_PRICES, MachinePrice, Price, choose_cost_basis, describe, load_aliases,
                             load_price_table, parse_user_price, price_coverage, price_requests, resolve_price,
                             user_prices)
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


def test_without_phases_machine_time_is_each_requests_own_e2e_never_divided_by_concurrency():
    table = load_price_table(use_genai_prices=False)
    frame = requests({"model": "gemma3-270m-q4_k_m", "e2e_s": 36.0, "concurrency": 2},
                     {"model": "gemma3-270m-q4_k_m", "e2e_s": 36.0, "concurrency": 1, "batch": True},
                     {"model": "gemma3-270m-q4_k_m", "e2e_s": None, "status": "error"})
    usd = price_requests(frame, table)
    assert usd.tolist() == pytest.approx([36 * 0.10 / 3600, 36 * 0.10 / 3600, 0.0])


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


# ---- model aliases, user prices, coverage and the cost basis ----------------------------------

def test_every_alias_is_a_priced_genai_prices_entry():
    from genai_prices import data_snapshot

    aliases = load_aliases()
    mapped = [a for a in aliases.values() if a.price_as is not None]
    # the shipped file covers AlpacaEval's 59 models: 55 priced, 4 left unpriced with a reason
    assert (len(mapped), len(aliases) - len(mapped)) == (55, 4)
    assert all(a.note for a in aliases.values() if a.price_as is None)
    table = load_price_table(as_of=AS_OF)
    for alias in mapped:
        provider_id, model_id = alias.price_as.split(":", 1)
        provider, info = data_snapshot.get_snapshot().find_provider_model(model_id, None, provider_id, None)
        assert (provider.id, info.id) == (provider_id, model_id), alias
        rates = info.get_prices(AS_OF)
        assert rates.input_mtok is not None and rates.output_mtok is not None, alias
        matched, price = resolve_price(table, alias.model.upper())  # names match case-insensitively
        assert matched == f"alias -> {alias.price_as}"
        assert (price.input_usd_per_mtok, price.output_usd_per_mtok) == (float(rates.input_mtok),
                                                                         float(rates.output_mtok))
        assert alias.where in price.source and (alias.note or "the same model") in price.source


def write_aliases(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aliases.yaml"
    path.write_text('version: "t1"\n' + text)
    return path


def test_aliases_come_after_prices_yaml_and_before_genai_prices(tmp_path: Path):
    path = write_aliases(tmp_path, "aliases:\n  - model: gpt-4o-mini\n    price_as: openai:gpt-4o\n"
                                   "    note: a test alias\n  - model: gemma3-270m-q4_k_m\n"
                                   "    price_as: openai:gpt-4o\n"
                                   "unpriced:\n  - model: secret-model\n    why: nobody sells it\n")
    table = load_price_table(as_of=AS_OF, aliases_path=path)
    matched, price = resolve_price(table, "GPT-4o-mini")
    assert matched == "alias -> openai:gpt-4o" and price.input_usd_per_mtok == 2.5
    assert price.source.endswith("for gpt-4o-mini per aliases.yaml line 3, version t1: a test alias")
    assert resolve_price(table, "gemma3-270m-q4_k_m")[0] == "gemma3-270m*"  # prices.yaml first
    mine = Price("gpt-4o-mini", 9.0, None, 9.0, "ours")
    assert resolve_price(load_price_table(as_of=AS_OF, aliases_path=path, overrides={"gpt-4o-mini": mine}),
                         "gpt-4o-mini") == ("gpt-4o-mini", mine)
    with pytest.raises(PriceError, match=r"aliases.yaml line 9, version t1: nobody sells it\): pass --price "
                                         r"secret-model=IN,OUT"):
        resolve_price(table, "secret-model")
    # without genai-prices an alias has nothing to point into
    assert load_price_table(use_genai_prices=False, aliases_path=path).aliases == {}


def test_an_alias_to_a_missing_entry_names_its_line(tmp_path: Path):
    path = write_aliases(tmp_path, "aliases:\n  - model: m\n    price_as: together:no-such-model\n")
    with pytest.raises(PriceError, match=r"aliases.yaml line 3, version t1: price_as 'together:no-such-model' is "
                                         r"not a priced model in genai-prices 0.2.3"):
        resolve_price(load_price_table(aliases_path=path), "m")


@pytest.mark.parametrize(("text", "line", "field"), [
    ("aliases:\n  - model: a\n    price_as: openai:gpt-4o\n    colour: red\n", 3, "colour"),
    ("aliases:\n  - model: a\n    price_as: gpt-4o\n", 3, "price_as"),
    ("aliases:\n  - model: a\n    price_as: ':gpt-4o'\n", 3, "price_as"),
    ("aliases:\n  - model: a\n", 3, "price_as"),
    ("aliases:\n  - model: a\n    price_as: openai:gpt-4o\nunpriced:\n  - model: A\n    why: twice\n", 6, "model"),
    ("unpriced:\n  - model: a\n", 3, "why"),
    ("aliases:\n  - model: a\n    price_as: openai:gpt-4o\n    note: ''\n", 3, "note"),
])
def test_bad_alias_entry_names_file_line_and_field(tmp_path: Path, text: str, line: int, field: str):
    path = write_aliases(tmp_path, text)
    with pytest.raises(DataFileError) as caught:
        load_aliases(path)
    assert (caught.value.path, caught.value.line, caught.value.field) == (str(path), line, field)


def test_user_prices_parse_and_win():
    model, price = parse_user_price(" my-model = 1.5, 6 ")
    assert (model, price.input_usd_per_mtok, price.cached_input_usd_per_mtok, price.output_usd_per_mtok) == (
        "my-model", 1.5, None, 6.0)
    assert parse_user_price("gpt-4o*=2.5,10,1.25")[1].cached_input_usd_per_mtok == 1.25
    prices = user_prices(["gpt-4o-mini=1,2", "my-model=0.5,0.5"])
    table = load_price_table(overrides=prices, as_of=AS_OF)
    frame = requests({"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000})
    assert price_requests(frame, table).iloc[0] == pytest.approx(3.0)
    assert resolve_price(table, "gpt-4o-mini")[1].source == "user price gpt-4o-mini=1,2"


@pytest.mark.parametrize(("entries", "message"), [
    (["gpt-4o=2.5"], "price 'gpt-4o=2.5': expected 2 or 3 numbers after '=' (IN,OUT or IN,OUT,CACHED), got 1"),
    (["gpt-4o=2.5,ten"], "price 'gpt-4o=2.5,ten': 'ten' is not a number >= 0"),
    (["gpt-4o=2.5,-1"], "price 'gpt-4o=2.5,-1': '-1' is not a number >= 0"),
    (["gpt-4o=2.5,nan"], "price 'gpt-4o=2.5,nan': 'nan' is not a number >= 0"),
    (["gpt-4o 2.5,10"], "price 'gpt-4o 2.5,10': expected MODEL=IN,OUT"),
    (["=1,2"], "price '=1,2': expected MODEL=IN,OUT"),
    (["a=1,2", "A=3,4"], "price 'A=3,4': 'A' already has a price"),
])
def test_bad_user_price_quotes_the_entry(entries: list[str], message: str):
    with pytest.raises(PriceError) as caught:
        user_prices(entries)
    assert str(caught.value).startswith(message)


def test_price_coverage_splits_models_with_reasons(tmp_path: Path):
    path = write_aliases(tmp_path, "aliases:\n  - model: llama-chat\n    price_as: together:meta-llama/Llama-2-7b-chat-hf\n"
                                   "    note: close enough\n  - model: gpt35\n    price_as: openai:gpt-3.5-turbo\n"
                                   "unpriced:\n  - model: best-of-16\n    why: sixteen samples\n")
    table = load_price_table(as_of=AS_OF, aliases_path=path,
                             overrides={"placeholder": MachinePrice(math.nan, "no price known")})
    coverage = price_coverage(table, ["gpt-4o-mini", "llama-chat", "gpt35", "best-of-16", "acme", "placeholder",
                                      "reported-one", "acme"], reported=["reported-one"])
    rows = coverage.set_index("model")
    assert list(coverage["model"]) == sorted({"gpt-4o-mini", "llama-chat", "gpt35", "best-of-16", "acme",
                                              "placeholder", "reported-one"})
    assert rows["priced"].to_dict() == {"acme": False, "best-of-16": False, "gpt-4o-mini": True, "gpt35": True,
                                        "llama-chat": True, "placeholder": False, "reported-one": True}
    assert rows.loc["llama-chat", "approximate"] and not rows.loc["gpt35", "approximate"]
    assert rows.loc["gpt-4o-mini", "matched"] == "openai:gpt-4o-mini"
    assert rows.loc["reported-one", "matched"] == "reported"
    assert rows.loc["best-of-16", "reason"] == "aliases.yaml: sixteen samples"
    generic = "not in prices.yaml or model_aliases.yaml, genai-prices 0.2.3 does not list it"
    assert rows.loc["acme", "reason"] == rows.loc["placeholder", "reason"] == generic
    assert rows.loc[rows["priced"], "reason"].isna().all()


def test_cost_basis_auto_falls_back_to_output_tokens_only_without_any_price():
    table = load_price_table(as_of=AS_OF, use_genai_prices=False)
    none = price_coverage(table, ["acme-a", "acme-b"])
    some = price_coverage(table, ["acme-a", "gemma3-270m-q4_k_m"])
    assert choose_cost_basis(table, some).basis == "prices" and choose_cost_basis(table, some).table is table
    assert choose_cost_basis(table, some, "output_tokens", 2.0).basis == "output_tokens"
    basis = choose_cost_basis(table, none, "auto", 2.0)
    assert (basis.basis, basis.requested, basis.usd_per_mtok) == ("output_tokens", "auto", 2.0)
    # output tokens x the stated price, nothing for prompts, batch or machine time; a cache hit costs 0
    frame = requests({"model": "acme-a", "prompt_tokens": 500, "cached_tokens": 100, "completion_tokens": 250},
                     {"model": "acme-b", "completion_tokens": 1000, "batch": True},
                     {"model": "gemma3-270m-q4_k_m", "completion_tokens": 1000, "e2e_s": 99.0},
                     {"model": "acme-a", "completion_tokens": 1000, "cache_hit": True})
    assert price_requests(frame, basis.table).tolist() == pytest.approx([0.0005, 0.002, 0.002, 0.0])
    assert "not a real price" in describe(basis.table, ["acme-a"])["source"].iloc[0]
    with pytest.raises(ParameterError, match="cost basis must be one of auto, prices, output_tokens"):
        choose_cost_basis(table, none, "cheapest")
    with pytest.raises(ParameterError, match=r"basis_usd_per_mtok.*must be a number > 0, got 0"):
        choose_cost_basis(table, none, "auto", 0)
