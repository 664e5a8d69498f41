import argparse
import asyncio
import sqlite3
import threading

import pytest

from toolkit.cache import (DEFAULT_PATH, CachedResponse, ResponseCache, cache_key, clear_path, lookup_or_none,
                           register_cli, request_key)
from toolkit.errors import DataFileError
from toolkit.measure import Request, StreamResult, Usage

RESULT = StreamResult(text="Paris", ttft_s=0.35, e2e_s=0.9, tbt_s=[0.2, 0.35], server_s=0.8,
                      usage=Usage(prompt_tokens=30, completion_tokens=3, cached_tokens=0, reasoning_tokens=0),
                      logprob_tokens=3, logprob_mean=-0.25, finish_reason="stop")
REQUEST = Request("chat", "gpt-4o-mini", [{"role": "user", "content": "Capital of France?"}], 8, 0.0, ("\n",))


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_key_depends_on_every_part_of_the_request_but_not_on_key_order():
    base = cache_key("api.openai.com", "m", {"a": 1, "b": [1, 2]})
    assert base == cache_key("api.openai.com", "m", {"b": [1, 2], "a": 1})
    assert len({base, cache_key("127.0.0.1:8080", "m", {"a": 1, "b": [1, 2]}),
                cache_key("api.openai.com", "m2", {"a": 1, "b": [1, 2]}),
                cache_key("api.openai.com", "m", {"a": 1, "b": [2, 1]})}) == 4
    hotter = Request(REQUEST.api, REQUEST.model, REQUEST.prompt, 8, 0.7, REQUEST.stop)
    assert request_key("h", REQUEST) == request_key("h", Request(*[getattr(REQUEST, f) for f in (
        "api", "model", "prompt", "max_tokens", "temperature", "stop")]))
    assert request_key("h", REQUEST) != request_key("h", hotter)


def test_miss_then_hit_returns_text_usage_and_original_timings(tmp_path):
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        key = request_key("api.openai.com", REQUEST)
        assert cache.get(key) is None
        cache.put(key, RESULT)
        got = cache.get(key)
    assert (got.text, got.usage, got.ttft_s, got.e2e_s, got.tbt_s, got.server_s) == (
        "Paris", RESULT.usage, 0.35, 0.9, [0.2, 0.35], 0.8)
    assert (got.logprob_tokens, got.logprob_mean, got.finish_reason) == (3, -0.25, "stop")
    assert got.stored_at is not None


def test_ttl_expiry_ignores_and_purges_old_entries(tmp_path):
    clock = Clock()
    with ResponseCache(tmp_path / "c.sqlite", ttl_s=60, clock=clock) as cache:
        cache.put("old", RESULT)
        clock.now += 30
        cache.put("young", RESULT)
        clock.now += 31  # "old" is 61 s old, "young" 31 s
        assert cache.get("old") is None and cache.get("young") is not None
        assert cache.stats().entries == 1
        clock.now += 30
        assert cache.stats().entries == 0  # stats purges what expired
    with ResponseCache(tmp_path / "c.sqlite") as cache:  # without a TTL nothing expires
        cache.put("kept", RESULT)
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 1


def test_counters_and_entries_persist_across_instances(tmp_path):
    path = tmp_path / "c.sqlite"
    with ResponseCache(path) as cache:
        cache.get("a")
        cache.put("a", RESULT)
        cache.get("a")
        cache.get("a")
    with ResponseCache(path) as cache:
        stats = cache.stats()
        assert (stats.hits, stats.misses, stats.entries) == (2, 1, 1)
        assert stats.hit_rate == pytest.approx(2 / 3)
        assert stats.size_bytes > 0 and stats.oldest == stats.newest
        cache.clear()
        stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries) == (0, 0, 0)


def test_a_corrupt_file_names_the_path_and_the_way_out(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(DataFileError) as raised:
        ResponseCache(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: not a readable response cache") and "frontier cache clear --path" in message
    assert "deleted the unreadable file" in clear_path(path)
    assert not path.exists()
    with ResponseCache(path) as cache:
        assert cache.stats().entries == 0


def test_another_sqlite_database_is_not_taken_for_a_cache(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(DataFileError, match=r"is an SQLite database but not a frontier response cache "
                                            r"\(tables: customers\)"):
        ResponseCache(path)


def test_a_damaged_entry_names_the_field(tmp_path):
    path = tmp_path / "c.sqlite"
    with ResponseCache(path) as cache:
        cache.put("k", RESULT)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE responses SET payload = '{\"text\": 1}'")
    with ResponseCache(path) as cache, pytest.raises(DataFileError, match='field "payload"'):
        cache.get("k")


def test_lookup_or_none_times_the_lookup_and_serves_it_as_a_stream_result(tmp_path):
    assert lookup_or_none(None, "k") is None
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert lookup_or_none(cache, "k") is None
        cache.put("k", CachedResponse.from_result(RESULT))
        hit = lookup_or_none(cache, "k")
    result = hit.as_result()
    assert 0 < hit.lookup_s < 0.5
    assert result.ttft_s == result.e2e_s == hit.lookup_s and result.tbt_s == []
    assert (result.text, result.usage) == ("Paris", RESULT.usage)


def test_many_threads_and_coroutines_share_one_cache(tmp_path):
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        def work(offset: int) -> None:
            for i in range(50):
                cache.put(f"k{offset + i}", RESULT)
                assert cache.get(f"k{offset + i}").text == "Paris"

        threads = [threading.Thread(target=work, args=(100 * t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        async def one(i: int) -> bool:
            await asyncio.sleep(0)
            return lookup_or_none(cache, f"k{i}") is not None

        async def many() -> list[bool]:
            return await asyncio.gather(*(one(i) for i in range(50)))

        assert all(asyncio.run(many()))
        stats = cache.stats()
    assert (stats.entries, stats.hits, stats.misses) == (200, 250, 0)


def test_cli_stats_and_clear(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    path = tmp_path / "c.sqlite"
    args = parser.parse_args(["cache", "stats", "--path", str(path)])
    assert args.func(args) == 0 and "no cache yet" in capsys.readouterr().out
    with ResponseCache(path) as cache:
        cache.put("a", RESULT)
        cache.get("a")
    args.func(args)
    out = capsys.readouterr().out
    assert "entries   1" in out and "hits      1" in out and "hit rate  100.0%" in out
    args = parser.parse_args(["cache", "clear", "--path", str(path)])
    args.func(args)
    assert capsys.readouterr().out.strip() == f"{path}: removed 1 entries and reset the counters"
    assert parser.parse_args(["cache", "stats"]).path == DEFAULT_PATH
