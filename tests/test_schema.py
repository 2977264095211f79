"""Settings classes whose fields the config schema declares (sppoflow.schema)."""

import dataclasses

import pytest

from sppoflow.config.validation import validate
from sppoflow.schema import config_key, config_section, declared, section_values, setting
from sppoflow.train.settings import TrainSettings


def test_a_field_is_the_setting_of_its_name_in_the_class_section():
    @config_section("aggregate")
    class Settings:
        estimator: str = declared()
        note: str = setting("x", "not a config setting")

    estimator, note = dataclasses.fields(Settings)
    assert estimator.default == "strength"
    assert estimator.metadata["choices"] == ["strength", "direct"]
    assert "strength" in estimator.metadata["help"]
    assert config_key(estimator) == ("aggregate", "estimator")
    assert config_key(note) is None
    assert Settings().estimator == "strength"


def test_a_field_no_setting_is_named_by_fails_when_the_class_is_made():
    with pytest.raises(
        TypeError, match="no config setting in this section is named by the field 'etta'"
    ):

        @config_section("train")
        class Misnamed:
            etta: float = declared()


def test_nested_keys_are_the_fields_named_object_underscore_key():
    keys = {f.name: config_key(f) for f in dataclasses.fields(TrainSettings)}
    assert keys["lora"] == ("train", "lora", "enabled")
    assert keys["lora_r"] == ("train", "lora", "r")
    assert keys["lora_target_modules"] == ("train", "lora", "target_modules")
    assert keys["eta"] == ("train", "eta")


def test_a_config_section_builds_its_settings_through_the_field_names():
    train = validate({"train": {"eta": 3.5, "lora": {"enabled": True, "r": 4}}})["train"]
    settings = TrainSettings(**section_values(TrainSettings, train))
    assert (settings.eta, settings.lora, settings.lora_r) == (3.5, True, 4)
    assert "accelerate_config" not in section_values(TrainSettings, train)  # not a field
