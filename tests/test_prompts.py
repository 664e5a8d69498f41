from pathlib import Path
from types import MappingProxyType

import pytest

from toolkit.datasets import Item, load_dataset
from toolkit.errors import ConfigError
from toolkit.graders import Label, Normalized, Numeric
from toolkit.prompts import load_dataset_spec, render

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "data" / "prompts"
DATASETS = ("capitals", "sentiment", "dates", "arithmetic")
SHIPPED_VARIANTS = ["chat", "few_shot_1", "few_shot_3", "few_shot_5", "zero_shot"]
SENTINEL = "\x00ITEM\x00"


def item(input_: str = "France", **fields: str) -> Item:
    return Item("toy-1", input_, "Paris", MappingProxyType(fields))


def make_dataset(tmp_path: Path, files: dict[str, str], dataset: str = "toy") -> Path:
    folder = tmp_path / dataset
    folder.mkdir()
    files = {"dataset.yaml": 'grader: {name: normalized}\nstop: ["\\n"]\n', **files}
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def load_error(tmp_path: Path, dataset: str = "toy") -> str:
    with pytest.raises(ConfigError) as err:
        load_dataset_spec(tmp_path, dataset)
    return str(err.value)


@pytest.mark.parametrize("dataset", DATASETS)
def test_shipped_datasets_load_with_all_variants(dataset):
    spec = load_dataset_spec(PROMPTS, dataset)
    assert spec.name == dataset and spec.stop == ("\n",)
    assert list(spec.variants) == SHIPPED_VARIANTS
    assert {v.api for n, v in spec.variants.items()} == {"completions", "chat"}
    assert spec.variant("chat").api == "chat" and spec.variant("zero_shot").api == "completions"


def test_shipped_graders():
    assert load_dataset_spec(PROMPTS, "capitals").grader == Normalized()
    assert load_dataset_spec(PROMPTS, "dates").grader == Normalized()
    assert load_dataset_spec(PROMPTS, "arithmetic").grader == Numeric()
    assert load_dataset_spec(PROMPTS, "sentiment").grader == Label(choices=("positive", "negative"))


def test_render_completion_and_chat():
    spec = load_dataset_spec(PROMPTS, "capitals")
    assert render(spec.variant("zero_shot"), item("Chile")) == (
        "Answer with the name of the city only.\n\n"
        "Question: What is the capital of Chile?\nAnswer:")
    assert render(spec.variant("chat"), item("Chile")) == [
        {"role": "system", "content": "You answer geography questions with the name of a city and nothing else."},
        {"role": "user", "content": "What is the capital of Chile? Reply with the city name only."},
    ]


@pytest.mark.parametrize("dataset", DATASETS)
def test_completion_prompts_end_without_whitespace(dataset):
    # A base model answers a prompt ending in "\n" with another "\n", which the stop sequence cuts
    # to an empty answer: every completion variant must end right where the answer starts.
    spec = load_dataset_spec(PROMPTS, dataset)
    for variant in spec.variants.values():
        if variant.api == "completions":
            assert not render(variant, item("x")).endswith((" ", "\n")), variant.name


@pytest.mark.parametrize("dataset", DATASETS)
def test_few_shot_examples_are_not_dataset_items_and_grow_with_k(dataset):
    spec = load_dataset_spec(PROMPTS, dataset)
    items = load_dataset(ROOT / "data" / "evals" / f"{dataset}.jsonl").items
    lengths = []
    for k in (1, 3, 5):
        before, after = render(spec.variant(f"few_shot_{k}"), item(SENTINEL)).split(SENTINEL)
        examples, _, query_start = before.rpartition("\n")
        lengths.append(len(examples))
        for it in items:  # the question as the template asks it, found among the examples?
            assert f"\n{query_start}{it.input}{after}" not in examples, (k, it.item_id)
    assert lengths == sorted(set(lengths))


def test_template_sees_declared_fields_but_never_expected(tmp_path):
    make_dataset(tmp_path, {"dataset.yaml": "grader: exact\nfields: [style]\n",
                         "v.txt": "{{ style }}: {{ input }}\n"})
    spec = load_dataset_spec(tmp_path, "toy")
    assert spec.stop == ()
    assert render(spec.variant("v"), item("May 5", style="long")) == "long: May 5"
    (tmp_path / "toy" / "leak.txt").write_text("{{ input }} -> {{ expected }}")
    assert load_error(tmp_path) == (f"{tmp_path}/toy/leak.txt: unknown template variable 'expected' "
                                    f"(available: input, style; add item fields to dataset.yaml `fields`)")


def test_render_names_the_template_when_an_item_lacks_a_field(tmp_path):
    make_dataset(tmp_path, {"dataset.yaml": "grader: exact\nfields: [style]\n", "v.txt": "{{ style }}"})
    variant = load_dataset_spec(tmp_path, "toy").variant("v")
    with pytest.raises(ConfigError) as err:
        render(variant, item("May 5"))
    assert str(err.value) == f"{tmp_path}/toy/v.txt: item 'toy-1': 'style' is undefined"


def test_unknown_variable_fails_at_load(tmp_path):
    make_dataset(tmp_path, {"v.txt": "Country: {{ inptu }}\nCapital:"})
    assert load_error(tmp_path) == (f"{tmp_path}/toy/v.txt: unknown template variable 'inptu' "
                                    f"(available: input; add item fields to dataset.yaml `fields`)")


def test_unknown_variable_in_chat_names_the_field(tmp_path):
    make_dataset(tmp_path, {"chat.yaml": "system: Be brief.\nuser: '{{ question }}'\n"})
    assert load_error(tmp_path) == (f'{tmp_path}/toy/chat.yaml: field "user": unknown template '
                                    f"variable 'question' (available: input; add item fields to "
                                    f"dataset.yaml `fields`)")


def test_template_syntax_errors_name_the_line(tmp_path):
    make_dataset(tmp_path, {"v.txt": "Q: {{ input }}\nA: {{ input | shout }}"})
    assert load_error(tmp_path) == (f"{tmp_path}/toy/v.txt line 2: template syntax error: "
                                    f"No filter named 'shout'.")
    make_dataset(tmp_path, {"chat.yaml": "user: |-\n  Q: {{ input\n  A:\n"}, dataset="chat")
    assert load_error(tmp_path, "chat") == (f'{tmp_path}/chat/chat.yaml: field "user": template '
                                            f"syntax error (template line 2): expected token "
                                            f"'end of print statement', got 'A'")


def test_template_that_fails_on_the_dummy_item(tmp_path):
    make_dataset(tmp_path, {"v.txt": "{{ input.upper_case() }}"})
    assert load_error(tmp_path) == (f"{tmp_path}/toy/v.txt: template does not render: "
                                    f"'str object' has no attribute 'upper_case'")


def test_unknown_variant_lists_available(tmp_path):
    make_dataset(tmp_path, {"b.txt": "{{ input }}", "a.yaml": "user: '{{ input }}'\n"})
    spec = load_dataset_spec(tmp_path, "toy")
    assert spec.variant("a").system is None and render(spec.variant("a"), item()) == [
        {"role": "user", "content": "France"}]
    with pytest.raises(ConfigError) as err:
        spec.variant("few_shot_9")
    assert str(err.value) == f"{tmp_path}/toy: unknown prompt variant 'few_shot_9' (available: a, b)"


def test_unknown_dataset_lists_available(tmp_path):
    make_dataset(tmp_path, {"v.txt": "{{ input }}"})
    assert load_error(tmp_path, "nope") == f"{tmp_path}/nope/dataset.yaml: no such dataset 'nope' (available: toy)"


def test_a_task_yaml_from_before_the_rename_is_told_its_new_name(tmp_path):
    folder = make_dataset(tmp_path, {"v.txt": "{{ input }}"})
    (folder / "dataset.yaml").rename(folder / "task.yaml")
    assert load_error(tmp_path) == f"{folder}/task.yaml: this file is now called dataset.yaml: rename it"
    make_dataset(tmp_path, {"v.txt": "{{ input }}"}, dataset="both")
    (tmp_path / "both" / "task.yaml").write_text("grader: exact\n", encoding="utf-8")
    assert load_error(tmp_path, "both") == (f"{tmp_path}/both/task.yaml: this file is now called dataset.yaml: "
                                            "remove it (dataset.yaml is there)")


@pytest.mark.parametrize("spec_yaml,message", [
    ("grader: {name: fuzzy}\n",
     "grader: unknown grader 'fuzzy' (valid: exact, label, normalized, numeric, regex)"),
    ("grader: {name: numeric, tolerance: 0.1}\n",
     "grader: numeric has no parameter 'tolerance' (valid: abs_tol, rel_tol)"),
    ("grader: [exact]\n",
     "field \"grader\": must be a grader name or a mapping with `name` and its parameters, got ['exact']"),
    ("stop: ['\\n']\n", 'field "grader": missing'),
    ("grader: exact\nstops: ['\\n']\n", 'field "stops": unknown key (valid: grader, stop, fields)'),
    ("grader: exact\nstop: END\n", "field \"stop\": must be a list of non-empty strings, got 'END'"),
    ("grader: exact\nstop: [a, b, c, d, e]\n", 'field "stop": at most 4 stop sequences, got 5'),
    ("- grader\n", "must be a YAML mapping, got list"),
])
def test_bad_dataset_yaml(tmp_path, spec_yaml, message):
    make_dataset(tmp_path, {"dataset.yaml": spec_yaml, "v.txt": "{{ input }}"})
    assert load_error(tmp_path) == f"{tmp_path}/toy/dataset.yaml: {message}"


def test_invalid_yaml_names_the_line(tmp_path):
    make_dataset(tmp_path, {"chat.yaml": "system: Reply with one word: yes or no.\nuser: '{{ input }}'\n"})
    assert load_error(tmp_path) == (f"{tmp_path}/toy/chat.yaml line 1: not valid YAML: "
                                    f"mapping values are not allowed here")


@pytest.mark.parametrize("chat_yaml,message", [
    ("system: Be brief.\n", 'field "user": missing or empty (a chat variant needs a `user` template)'),
    ("user: [a]\n", 'field "user": must be a string, got list'),
    ("user: hi\nassistant: hello\n", 'field "assistant": unknown key (valid: system, user)'),
])
def test_bad_chat_variant(tmp_path, chat_yaml, message):
    make_dataset(tmp_path, {"chat.yaml": chat_yaml})
    assert load_error(tmp_path) == f"{tmp_path}/toy/chat.yaml: {message}"


def test_stray_files(tmp_path):
    make_dataset(tmp_path, {"v.txt": "{{ input }}", "NOTES.md": "ignored", "v.jinja": "{{ input }}"})
    assert load_error(tmp_path) == (f"{tmp_path}/toy/v.jinja: not a prompt variant: name it .txt "
                                    f"(completion template) or .yaml (chat `system`/`user` templates)")
    (tmp_path / "toy" / "v.jinja").unlink()
    (tmp_path / "toy" / "v.yaml").write_text("user: '{{ input }}'\n")
    assert load_error(tmp_path) == f"{tmp_path}/toy/v.yaml: variant 'v' is defined twice (also v.txt)"
    (tmp_path / "toy" / "v.yaml").unlink()
    (tmp_path / "toy" / "v.txt").unlink()
    assert load_error(tmp_path) == f"{tmp_path}/toy: no prompt variants (.txt or .yaml files)"
