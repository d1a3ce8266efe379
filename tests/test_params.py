"""params.yaml is checked before any work: errors name the key, the bad value and what is allowed."""

import copy
from pathlib import Path

import pytest
import yaml

from synthmix.config import load_params, validate_params
from synthmix.config.mixnames import MixSpec
from synthmix.core.errors import ParamsError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def raw():
    with open(REPO / "params.yaml") as fh:
        return yaml.safe_load(fh)


def test_shipped_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.mix.names[0] == "pct0"
    assert len(params.prepare.classes) == 6


def check_error(raw, *fragments):
    with pytest.raises(ParamsError) as info:
        validate_params(raw)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_bad_value_names_key_value_and_rule(raw):
    raw["train"]["lr"] = -0.1
    check_error(raw, "train.lr", "-0.1", "greater than 0")


def test_unknown_key_lists_allowed_keys(raw):
    raw["train"]["lrr"] = 0.1
    check_error(raw, "train.lrr", "unknown key", "lr", "epochs")


def test_bad_choice_lists_choices(raw):
    raw["train"]["optimizer"] = "lion"
    check_error(raw, "train.optimizer", "'lion'", "adam", "adamw", "sgd")


def test_missing_section(raw):
    del raw["generate"]
    check_error(raw, "generate", "missing")


def test_bad_mix_name(raw):
    raw["mix"]["names"] = ["pct0", "60"]
    check_error(raw, "mix.names", "'60'", "pctN")
    raw["mix"]["names"] = ["pct0", "pct120"]
    check_error(raw, "pct120", "at most 100")


def test_mix_needing_more_synthetic_than_generated(raw):
    raw["generate"]["per_class"] = 100
    check_error(raw, "pct100", "needs 225 synthetic", "generate.per_class")


def test_mix_needing_more_real_than_prepared(raw):
    raw["mix"]["per_class"] = 400
    check_error(raw, "needs 400 real", "prepare.train_per_class")


def test_baseline_must_be_a_mix(raw):
    raw["summarize"]["baseline"] = "pct10"
    check_error(raw, "summarize.baseline", "pct10")


def test_duplicate_classes(raw):
    raw["prepare"]["classes"] = ["coat", "coat"]
    check_error(raw, "prepare.classes", "unique", "coat")


def test_generator_shape_rules(raw):
    bad = copy.deepcopy(raw)
    bad["train_generator"]["block_out_channels"] = [32, 60]
    check_error(bad, "multiple of 8")
    bad = copy.deepcopy(raw)
    bad["train_generator"]["resolution"] = 30
    check_error(bad, "resolution", "divisible by 4")


def test_not_a_mapping(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(path)
    path.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(path)


@pytest.mark.parametrize(
    "total,name,expected",
    [(225, "pct0", 0), (225, "pct50", 113), (225, "pct60", 135), (225, "pct70", 158),
     (225, "pct80", 180), (225, "pct100", 225), (10, "pct50", 5), (1, "pct50", 1)],
)
def test_fake_count_rounds_half_up(total, name, expected):
    assert MixSpec.parse(name).counts(total, total)[1] == expected


def _fields_set_by(model, data: dict, path: str = ""):
    """(dotted key, pydantic field) of every key of ``data`` (params.yaml) in ``model``, nested sections too."""
    import typing

    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        if name not in data:
            continue
        yield path + name, field
        ann = field.annotation
        while typing.get_origin(ann) is typing.Union:
            ann = next(a for a in typing.get_args(ann) if a is not type(None))
        if isinstance(ann, type) and issubclass(ann, BaseModel) and isinstance(data[name], dict):
            yield from _fields_set_by(ann, data[name], f"{path}{name}.")


def test_every_default_lives_in_one_place(raw):
    """A key that params.yaml sets is required by the schema (no second, silent default there), and
    every section the schema knows is in params.yaml with every one of its keys."""
    from pydantic import BaseModel

    from synthmix.config.loading import schema_of, section_names

    doubled = []
    for name in section_names():
        schema = schema_of(name)
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            doubled += [f"{name}.{key}" for key, field in _fields_set_by(schema, raw[name]) if not field.is_required()]
    assert not doubled, f"schema defaults for keys params.yaml sets (remove them from the schema): {doubled}"
    missing = [n for n in section_names() if n not in raw]
    assert not missing, f"sections missing from params.yaml: {missing}"
    # a shipped params.yaml without a key is refused, naming the key (not silently defaulted)
    del raw["train"]["epochs"]
    check_error(raw, "train.epochs", "required key is missing")


def test_a_copy_of_a_partly_listed_section_keeps_its_limits(raw):
    """seg_filter trains its scorer with a copy of seg_train's recipe (epochs replaced): the copy
    still refuses the keys the stage does not list, so the audit of its params list holds."""
    params = validate_params(raw, keys=["seg_train.lr", "seg_train.batch_size"], stage="seg_filter")
    scorer = params.seg_train.model_copy(update={"epochs": 3})
    assert scorer.epochs == 3 and scorer.lr == raw["seg_train"]["lr"]
    with pytest.raises(ParamsError, match="stage seg_filter reads params key 'seg_train.seeds'"):
        scorer.seeds
