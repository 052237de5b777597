"""One config per pruning method: each accepts its own keys, and a key of another method exits 2 naming
the key and the method, from a config file and from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter
from typer.testing import CliRunner

from core.errors import InputError
from pipeline.cli import app
from pipeline.config import load_config
from pipeline.pruning.config import (
    METHODS,
    AutoConfig,
    MagnitudeConfig,
    PruneConfig,
    ReconstructConfig,
    SharedKeys,
    resolve,
)

# Each method's own keys, at values other than their defaults
OWN_KEYS = {
    "auto": {"latency": 0.6, "latency_engine": "openvino/int8", "latency_threads": 2, "latency_variants": 5}
    | {"calib_images": 16, "sensitivity_images": 8, "round_to": "auto", "remove_blocks": True},
    "magnitude": {"importance": "taylor", "global_pruning": False, "isomorphic": True, "round_to": 4}
    | {"finetune_epochs_per_step": 1, "bn_batches": 2, "batch": 4},
}
OWN_KEYS["reconstruct"] = OWN_KEYS["auto"]
SHARED = {"macs": None, "params": 0.6, "max_layer_ratio": 0.4, "min_channels": 16, "protected_layers": [0]}
SHARED |= {"protect_head": True, "steps": 3, "imgsz": 320}


def _pipeline(tmp_path: Path, tiny_checkpoint: Path, prune: dict) -> Path:
    path = tmp_path / "pipeline.yaml"
    config = {"model": str(tiny_checkpoint), "data": {"synth": {"images": 8}}, "imgsz": 64, "prune": prune}
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_accepts_its_own_keys_and_the_shared_ones(method):
    values = {**SHARED, **OWN_KEYS[method]}
    values.pop("latency" if method != "magnitude" else "params")  # one goal
    config = TypeAdapter(PruneConfig).validate_python({"method": method, **values})
    assert type(config) is METHODS[method]
    assert config.model_dump(exclude={"method", "data"}, exclude_none=True) == {
        k: v for k, v in values.items() if v is not None
    }


def test_without_method_the_section_is_auto_and_a_plain_config_keeps_working(tmp_path, tiny_checkpoint):
    config = load_config(_pipeline(tmp_path, tiny_checkpoint, {"macs": 0.7, "round_to": 8}))
    assert type(config.prune) is AutoConfig and config.prune.goal == ("macs", 0.7)


@pytest.mark.parametrize(
    ("prune", "key", "method", "owners"),
    [
        ({"macs": 0.7, "importance": "taylor"}, "importance", "auto", "method 'magnitude'"),
        ({"method": "reconstruct", "bn_batches": 0}, "bn_batches", "reconstruct", "method 'magnitude'"),
        ({"method": "magnitude", "latency": 0.6}, "latency", "magnitude", "methods 'auto' and 'reconstruct'"),
        ({"method": "magnitude", "calib_images": 64}, "calib_images", "magnitude", "'reconstruct'"),
    ],
)
def test_a_key_of_another_method_in_a_config_file_names_the_key_and_the_method(
    tmp_path, tiny_checkpoint, prune, key, method, owners
):
    path = _pipeline(tmp_path, tiny_checkpoint, prune)
    with pytest.raises(InputError) as err:
        load_config(path)
    message = str(err.value)
    assert err.value.exit_code == 2 and "pipeline.yaml" in message
    assert f"key 'prune.{key}': not used by method '{method}'" in message and owners in message
    result = CliRunner().invoke(app, ["run", str(path), "--workdir", str(tmp_path / "work")])
    assert result.exit_code == 2 and f"prune.{key}" in result.output and f"'{method}'" in result.output
    assert not (tmp_path / "work").exists()


def test_an_unknown_key_suggests_the_nearest_key_of_its_method(tmp_path, tiny_checkpoint):
    with pytest.raises(InputError, match=r"prune\.importanc': unknown key; did you mean `importance`"):
        load_config(_pipeline(tmp_path, tiny_checkpoint, {"method": "magnitude", "importanc": "l1"}))
    with pytest.raises(InputError, match=r"key 'prune': method is one of auto, reconstruct, magnitude"):
        load_config(_pipeline(tmp_path, tiny_checkpoint, {"method": "taylor"}))
    with pytest.raises(InputError, match=r"round_to: auto is measured by method 'reconstruct'"):
        load_config(_pipeline(tmp_path, tiny_checkpoint, {"method": "magnitude", "round_to": "auto"}))


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--importance", "taylor"], ["--importance not used by method 'auto'", "method 'magnitude'"]),
        (["--importance", "l2"], ["--importance not used by method 'auto'"]),  # its default, but given
        (["--local"], ["--global-pruning not used by method 'auto'"]),
        (
            ["--method", "magnitude", "--calib-images", "16"],
            ["--calib-images not used by method 'magnitude'"],
        ),
        (["--method", "reconstruct", "--bn-batches", "0"], ["--bn-batches not used by method 'reconstruct'"]),
        (["--method", "taylor"], ["--method is one of auto, reconstruct, magnitude", "'taylor'"]),
    ],
)
def test_a_command_line_option_of_another_method_exits_2_naming_it_and_the_method(
    tiny_checkpoint, tmp_path, args, named
):
    out = tmp_path / "p.pt"
    result = CliRunner().invoke(app, ["prune", "--model", str(tiny_checkpoint), "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())  # rich wraps long lines
    assert all(text in output for text in named), output
    assert not out.exists()


def test_auto_runs_reconstruct_with_data_and_magnitude_with_its_defaults_without(tmp_path):
    model = tmp_path / "m.pt"
    auto = AutoConfig(macs=0.6, min_channels=8, calib_images=16)
    with_data = resolve(auto, tmp_path, model)
    assert type(with_data) is ReconstructConfig and with_data.calib_images == 16
    without = resolve(auto, None, model)
    assert type(without) is MagnitudeConfig and without.min_channels == 8
    assert without.importance == MagnitudeConfig().importance and without.resolved_protect_head()
    with pytest.raises(InputError, match="latency goal"):
        resolve(AutoConfig(latency=0.6), None, model)
    with pytest.raises(InputError, match="needs calibration images"):
        resolve(ReconstructConfig(), None, model)


def test_the_shared_keys_are_the_ones_every_method_declares():
    for config in METHODS.values():
        assert set(SharedKeys.model_fields) <= set(config.model_fields)
    own = [set(c.model_fields) - set(SharedKeys.model_fields) for c in (ReconstructConfig, MagnitudeConfig)]
    assert not own[0] & own[1]  # a key is shared, or one method's


def test_a_bad_value_of_a_union_key_names_the_key_for_each_member_tried(tmp_path, tiny_checkpoint):
    """`round_to` is an int or `auto`: pydantic's member tags (`int`, `literal[...]`) are not keys."""
    with pytest.raises(InputError) as raised:
        load_config(_pipeline(tmp_path, tiny_checkpoint, {"round_to": "foo"}))
    message = str(raised.value)
    assert message.count("prune.round_to") == 2 and ".int" not in message and "literal" not in message
