import shutil
from pathlib import Path

import pytest
import yaml

from toolkit import resources
from toolkit.config_file import load_config
from toolkit.errors import ConfigError, DataFileError

BASE = {
    "name": "t",
    "datasets": ["capitals"],
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
    configs = config.configs()
    assert len(configs) == 2 * 2 * 2 * 1 * 2
    assert len({c.config_id for c in configs}) == len(configs)
    loose = [c for c in configs if c.max_tokens == 32]
    assert all(not c.stop for c in loose) and all(c.config_id.endswith(("c1", "c4")) for c in configs)
    assert (config.evals_dir, config.prompts_dir) == (resources.evals_dir(), resources.prompts_dir())  # the shipped ones
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
    ("grid.temperature", [0.0, -0.5], 'field "grid.temperature[1]": must be >= 0, got -0.5'),
    ("endpoints", [{"name": "x", "base_url": "127.0.0.1:8000/v1", "models": ["m"]}],
     'field "endpoints[0].base_url": must be an http:// or https:// URL such as http://127.0.0.1:8000/v1'),
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
    configs = load_config(path).configs()
    assert sum(c.cache for c in configs) == len(configs) // 2
    assert all(c.config_id.endswith("/cache") == c.cache for c in configs)
    with pytest.raises(ConfigError, match=r'field "grid.cache\[0\]": must be \'off\' or \'response\''):
        load_config(write(tmp_path, with_change("grid.cache", ["disk"])))


def test_shipped_configs_are_valid():
    for path in sorted(Path(__file__).resolve().parents[1].joinpath("data", "configs").glob("*.yaml")):
        config = load_config(path)
        assert config.configs(), path


@pytest.mark.parametrize("key_path, value, message", [
    ("grid.prompt_variants", ["zero_shot", "chat", "zero_shot"],
     'field "grid.prompt_variants[2]": \'zero_shot\' is listed twice (also grid.prompt_variants[0])'),
    ("grid.max_tokens", [8, {"tokens": 8}], 'field "grid.max_tokens[1]": 8 is listed twice (also grid.max_tokens[0])'),
    ("grid.temperature", [0, 0.0], 'field "grid.temperature[1]": 0.0 is listed twice (also grid.temperature[0])'),
    ("grid.concurrency", [4, 1, 4], 'field "grid.concurrency[2]": 4 is listed twice (also grid.concurrency[0])'),
    ("grid.cache", ["off", False], 'field "grid.cache[1]": \'off\' is listed twice (also grid.cache[0])'),
    ("datasets", ["capitals", "capitals"], 'field "datasets[1]": \'capitals\' is listed twice (also datasets[0])'),
    ("endpoints", [{"name": "a", "models": ["m", "m"]}],
     'field "endpoints[0].models[1]": \'m\' is listed twice (also endpoints[0].models[0])'),
    ("endpoints", [{"name": "a", "models": ["m"]}, {"name": "a", "models": ["n"]}],
     'field "endpoints[1]": \'name: a\' is listed twice (also endpoints[0])'),
])
def test_duplicate_grid_values_are_refused_with_their_key(tmp_path, key_path, value, message):
    """A value listed twice would send (and pay for) every request of its configs twice under one config_id."""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, with_change(key_path, value)))
    assert message in str(caught.value)
    assert str(caught.value).endswith("every request of that configuration would be sent twice: remove one")


def test_loose_and_tight_caps_of_one_size_are_different_configs(tmp_path):
    raw = with_change("grid.max_tokens", [8, {"tokens": 8, "stop": False}])
    configs = load_config(write(tmp_path, raw)).configs()
    assert len({c.config_id for c in configs}) == len(configs) == 2 * 2 * 2 * 2


def test_config_ids_that_would_collide_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r'field "grid": two configs share the config_id '
                                          r"'m1/zero_shot/mt8/T0.1/c1'"):
        load_config(write(tmp_path, with_change("grid.temperature", [0.1, 0.1000000001])))


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000/v1?api-key=sk-secret-123", "https://h.example/v1#sk-secret-123",
                                 "https://user:sk-secret-123@h.example/v1"])
def test_base_url_with_a_key_in_it_is_refused(tmp_path, url):
    """The client appends /chat/completions to base_url: a query string would 404 every request."""
    raw = with_change("endpoints", [{"name": "x", "base_url": url, "models": ["m"]}])
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, raw))
    bare = url.split("?")[0].split("#")[0].replace("user:sk-secret-123@", "")
    assert str(caught.value).endswith(
        f'c.yaml: field "endpoints[0].base_url": must be a plain URL ({bare}) without a query string, fragment or '
        "user:password: an API key goes in an environment variable named by the endpoint's api_key_env and is "
        "sent as the Authorization header")
    assert "sk-secret" not in str(caught.value)


def with_subgrids(*subgrids: dict) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    raw["grid"]["concurrency"] = [8]
    raw["items_per_dataset"] = 40
    raw["subgrids"] = list(subgrids)
    return raw


def test_subgrids_add_configs_with_their_own_items_and_repeats(tmp_path):
    from toolkit.runner import plan

    raw = with_subgrids({"prompt_variants": ["few_shot_3"], "max_tokens": [8], "concurrency": [1, 2, 4],
                         "items_per_dataset": 3, "repeats": 1},
                        {"prompt_variants": ["zero_shot"], "max_tokens": [8], "cache": ["response"],
                         "items_per_dataset": 2})
    raw["endpoints"][0]["models"] = ["m1"]
    repo = Path(__file__).resolve().parents[1]
    raw["evals_dir"], raw["prompts_dir"] = str(repo / "data" / "evals"), str(repo / "data" / "prompts")
    config = load_config(write(tmp_path, raw))
    configs = config.configs()
    main = [c for c in configs if c.concurrency == 8 and not c.cache]
    assert len(main) == 4 and all(c.items_per_dataset is None and c.repeats == 2 for c in main)
    sweep = [c for c in configs if c.concurrency in (1, 2, 4)]
    assert [c.concurrency for c in sweep] == [1, 2, 4] and {c.items_per_dataset for c in sweep} == {3}
    cached = [c for c in configs if c.cache]
    assert [c.config_id for c in cached] == ["m1/zero_shot/mt8/T0/c8/cache"] and cached[0].repeats == 2
    assert config.max_concurrency == 8
    planned = plan(config)
    per_config = {c.config_id: sum(p.config.config_id == c.config_id for p in planned) for c in configs}
    assert {per_config[c.config_id] for c in main} == {40 * 2}
    assert {per_config[c.config_id] for c in sweep} == {3} and per_config[cached[0].config_id] == 2 * 2
    assert [p.config.concurrency for p in planned][:80 * 4 + 4] == [8] * (80 * 4 + 4)  # one phase per level
    assert len({p.request_id for p in planned}) == len(planned)
    capped = plan(config, items_per_dataset=2)  # --limit caps every grid
    assert {sum(p.config.config_id == c.config_id for p in capped) for c in main} == {2 * 2}


def test_a_subgrid_that_repeats_a_config_of_the_grid_is_refused(tmp_path):
    raw = with_subgrids({"prompt_variants": ["zero_shot"]})
    with pytest.raises(ConfigError, match=r"subgrids\[0\].*repeats the config 'm1/zero_shot/mt8/T0/c8' of grid"):
        load_config(write(tmp_path, raw))


@pytest.mark.parametrize(("subgrid", "message"), [
    ({"items_per_dataset": 0}, r"subgrids\[0\]\.items_per_dataset.*integer > 0"),
    ({"concurrency": [0]}, r"subgrids\[0\]\.concurrency\[0\]"),
    ({"arrival": {"rate_per_s": 1}}, r"subgrids\[0\]\.arrival"),
    ({"colour": "red"}, r"subgrids\[0\]\.colour"),
    ("c1", r"subgrids\[0\].*mapping"),
])
def test_bad_subgrids_name_their_key(tmp_path, subgrid, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, with_subgrids(subgrid)))



@pytest.mark.parametrize(("where", "old", "new"), [
    ("", "tasks", "datasets"),
    ("", "items_per_task", "items_per_dataset"),
    ("grid", "items_per_task", "items_per_dataset"),
    ("subgrids[0]", "items_per_task", "items_per_dataset"),
])
def test_a_key_from_before_the_rename_is_told_its_new_name(tmp_path, where, old, new):
    """A config written when datasets were called tasks gets the new key's name, not "unknown key"."""
    raw = with_subgrids({"prompt_variants": ["few_shot_3"], "concurrency": [2]})
    section = {"": raw, "grid": raw["grid"], "subgrids[0]": raw["subgrids"][0]}[where]
    section[old] = section.pop(new, 3)
    path = write(tmp_path, raw)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    key = f"{where}.{old}" if where else old
    assert str(caught.value) == (f"{path}: field \"{key}\": this key was renamed to '{new}': "
                                 f"write {new}: instead of {old}:")

# -- where a config's paths point -------------------------------------------------------------------

def test_relative_paths_are_read_from_the_config_files_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    for folder in ("my_evals", "my_prompts"):
        (project / folder).mkdir(parents=True)
    raw = {**BASE, "evals_dir": "../my_evals", "prompts_dir": "../my_prompts", "cache": {"path": "cache/r.sqlite"}}
    path = write(project, raw)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the command's cwd does not matter
    config = load_config(path)
    assert config.evals_dir == project / "my_evals" and config.prompts_dir == project / "my_prompts"
    assert config.cache.path == project / "configs" / "cache" / "r.sqlite"


def test_a_folder_that_is_not_there_says_where_it_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, {**BASE, "evals_dir": "evals"})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}: field \"evals_dir\": folder 'evals' not found: looked for {tmp_path / 'configs' / 'evals'} (a "
        f"relative path is read from the config file's folder; leave evals_dir out for the shipped "
        f"{resources.evals_dir()})")


def test_a_missing_dataset_says_where_it_was_looked_for(tmp_path):
    """A config outside data/configs with prompts of its own but no evals_dir reads the shipped datasets."""
    from toolkit.runner import plan

    shutil.copytree(resources.prompts_dir() / "capitals", tmp_path / "prompts" / "mine")
    raw = {**BASE, "datasets": ["mine"], "prompts_dir": "../prompts"}
    with pytest.raises(DataFileError) as caught:
        plan(load_config(write(tmp_path, raw)))
    shipped = ", ".join(sorted(p.stem for p in resources.evals_dir().glob("*.jsonl")))
    assert shipped.startswith("arithmetic, capitals")
    assert str(caught.value) == (
        f"{resources.evals_dir() / 'mine.jsonl'}: file not found among the datasets shipped with the package "
        f"({shipped}); for your own, set evals_dir in the config to the folder holding mine.jsonl")
    (tmp_path / "evals").mkdir()
    (tmp_path / "evals" / "other.jsonl").write_text('{"id": "1", "input": "x", "expected": "y"}\n')
    with pytest.raises(DataFileError) as caught:
        plan(load_config(write(tmp_path, {**raw, "evals_dir": "../evals"})))
    assert str(caught.value) == f"{tmp_path / 'evals' / 'mine.jsonl'}: file not found ({tmp_path / 'evals'} holds other)"


def test_a_shipped_config_is_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config("data/configs/smoke.yaml")
    assert config.path == resources.configs_dir() / "smoke.yaml"
    assert config.evals_dir == resources.evals_dir()
    with pytest.raises(ConfigError) as caught:
        load_config("data/configs/nope.yaml")
    assert str(caught.value) == (f"data/configs/nope.yaml: config file not found (looked for "
                                 f"{tmp_path / 'data/configs/nope.yaml'} and {resources.configs_dir() / 'nope.yaml'})")
