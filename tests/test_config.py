from pathlib import Path

import pytest
import yaml

from toolkit.config import load_config
from toolkit.errors import ConfigError

BASE = {
    "name": "t",
    "tasks": ["capitals"],
    "endpoints": [{"name": "local", "base_url": "http://127.0.0.1:9/v1", "models": ["m1", "m2"]}],
    "grid": {"prompt_variants": ["zero_shot", "few_shot_3"], "max_tokens": [8, {"tokens": 32, "stop": False}],
             "concurrency": [1, 4], "repeats": 2},
}


def write(tmp_path: Path, raw: object) -> Path:
    path = tmp_path / "configs" / "c.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return path


def with_change(key_path: str, value: object) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    *parents, last = key_path.split(".")
    node = raw
    for part in parents:
        node = node[part]
    node[last] = value
    return raw


def test_grid_expands_to_every_combination(tmp_path):
    config = load_config(write(tmp_path, BASE))
    cells = config.run_configs()
    assert len(cells) == 2 * 2 * 2 * 1 * 2
    assert len({c.config_id for c in cells}) == len(cells)
    loose = [c for c in cells if c.max_tokens == 32]
    assert all(not c.stop for c in loose) and all(c.config_id.endswith(("c1", "c4")) for c in cells)
    assert config.evals_dir == (tmp_path / "evals").resolve()
    assert config.grid.repeats == 2


@pytest.mark.parametrize("key_path, value, message", [
    ("grid.repeats", "two", 'field "grid.repeats": must be int'),
    ("grid.concurrency", [1, 0], 'field "grid.concurrency[1]": must be > 0'),
    ("grid.max_tokens", [{"tokens": 8, "stopp": True}], "unknown key(s): grid.max_tokens[0].stopp"),
    ("grid.temperature", [True], 'field "grid.temperature[0]": must be'),
    ("order", "random", 'field "order": must be \'shuffled\' or \'grouped\''),
    ("limits", {"max_cost": 1}, "unknown key(s): limits.max_cost"),
    ("retry", {"max_attempts": "5"}, 'field "retry.max_attempts": must be int'),
    ("extra", 1, "unknown key(s): extra"),
])
def test_bad_values_name_the_key(tmp_path, key_path, value, message):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, with_change(key_path, value)))
    assert message in str(caught.value)
    assert "c.yaml" in str(caught.value)


def test_api_key_in_config_is_refused(tmp_path):
    raw = with_change("endpoints", [{"name": "x", "api_key": "sk-secret", "models": ["m"]}])
    with pytest.raises(ConfigError, match="api_key_env"):
        load_config(write(tmp_path, raw))


def test_missing_required_key_and_bad_yaml(tmp_path):
    raw = dict(BASE)
    del raw["grid"]
    with pytest.raises(ConfigError, match='field "grid": is required'):
        load_config(write(tmp_path, raw))
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml.*not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_cache_modes_accept_yaml_off(tmp_path):
    path = write(tmp_path, with_change("grid.cache", [False, "response"]))
    path.write_text(path.read_text().replace("- false", "- off"))
    cells = load_config(path).run_configs()
    assert sum(c.cache for c in cells) == len(cells) // 2
    assert all(c.config_id.endswith("/cache") == c.cache for c in cells)
    with pytest.raises(ConfigError, match=r'field "grid.cache\[0\]": must be \'off\' or \'response\''):
        load_config(write(tmp_path, with_change("grid.cache", ["disk"])))


def test_shipped_configs_are_valid():
    for path in sorted(Path(__file__).resolve().parents[1].joinpath("data", "configs").glob("*.yaml")):
        config = load_config(path)
        assert config.run_configs(), path
