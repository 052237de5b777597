"""Config validation fails before any work starts, naming the file, the key and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.errors import InputError
from pipeline.config import SynthSource, load_config


def write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def minimal(tiny_checkpoint: Path) -> dict:
    return {"model": str(tiny_checkpoint), "data": {"synth": {"images": 8}}, "imgsz": 64}


def test_minimal_config_loads_and_resolves_relative_paths(tmp_path, tiny_checkpoint, minimal):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.pt").write_bytes(tiny_checkpoint.read_bytes())
    minimal["model"] = "models/m.pt"
    config = load_config(write(tmp_path, minimal))
    assert config.model == (tmp_path / "models" / "m.pt").resolve()
    assert isinstance(config.data, SynthSource) and config.data.synth.images == 8


def test_unknown_key_is_named(tmp_path, minimal):
    minimal["prune"] = {"macs": 0.5, "macz": 0.4}
    with pytest.raises(InputError) as err:
        load_config(write(tmp_path, minimal))
    message = str(err.value)
    assert "pipeline.yaml" in message and "prune.macz" in message and "unknown key" in message


def test_wrong_type_is_named_with_the_value(tmp_path, minimal):
    minimal["imgsz"] = "big"
    with pytest.raises(InputError) as err:
        load_config(write(tmp_path, minimal))
    assert "'imgsz'" in str(err.value) and "'big'" in str(err.value)


def test_imgsz_must_be_a_multiple_of_the_stride(tmp_path, minimal):
    minimal["imgsz"] = 100
    with pytest.raises(InputError, match="multiple of 32"):
        load_config(write(tmp_path, minimal))


@pytest.mark.parametrize(
    ("given", "device"), [("cpu", "cpu"), ("cuda", "cuda:0"), ("cuda:1", "cuda:1"), (0, "cuda:0")]
)
def test_a_config_device_is_spelt_as_the_command_line_spells_it(tmp_path, minimal, caplog, given, device):
    """`device: 0` in a file goes through the same normalisation as `--device 0`, warning alike."""
    minimal["device"] = given
    minimal["finetune"] = {"device": given}
    config = load_config(write(tmp_path, minimal))
    assert config.device == device and config.finetune is not None and config.finetune.device == device
    assert ("deprecated" in caplog.text) is (given == 0)


def test_a_config_device_that_is_no_torch_device_is_named(tmp_path, minimal):
    minimal["device"] = "gpu"
    with pytest.raises(InputError) as err:
        load_config(write(tmp_path, minimal))
    assert "'device'" in str(err.value) and "'gpu'" in str(err.value)


def test_missing_file_is_named_before_any_work(tmp_path, minimal):
    minimal["model"] = "nowhere/model.pt"
    with pytest.raises(InputError) as err:
        load_config(write(tmp_path, minimal))
    assert "'model'" in str(err.value) and "nowhere/model.pt" in str(err.value)


def test_the_coco_example_says_where_its_files_come_from_and_fails_with_a_hint_without_them(tmp_path):
    """A clone without `shared/` beside it: the example stops at once, naming the file and the way out."""
    example = Path(__file__).resolve().parents[1] / "examples" / "yolov8n-coco.yaml"
    assert "Where its files come from" in example.read_text()
    copy = tmp_path / "clone" / "examples" / example.name  # no shared/ beside this clone
    copy.parent.mkdir(parents=True)
    copy.write_text(example.read_text())
    with pytest.raises(InputError) as err:
        load_config(copy)
    assert "key 'model'" in str(err.value) and "shared/models/yolov8n.pt does not exist" in str(err.value)
    assert err.value.hint and "resolved against the config's folder" in err.value.hint
    assert "comments at the top of yolov8n-coco.yaml" in err.value.hint


def test_missing_required_key(tmp_path, minimal):
    del minimal["model"]
    with pytest.raises(InputError, match="'model': required key is missing"):
        load_config(write(tmp_path, minimal))


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(InputError, match=r"broken\.yaml: invalid YAML"):
        load_config(path)


def test_unknown_build_target_fails(tmp_path, minimal):
    minimal["build"] = [{"target": "coreml", "precision": "fp32"}]
    with pytest.raises(InputError, match=r"build\[0\]"):
        load_config(write(tmp_path, minimal))


@pytest.mark.parametrize(
    ("example", "family"),
    [
        ("quickstart.yaml", "yolov8"),
        ("quickstart-yolo11n.yaml", "yolo11"),
        ("quickstart-yolo26n.yaml", "yolo26"),
    ],
)
def test_each_familys_quickstart_config_is_valid_and_names_its_reference_detector(example, family):
    from core.checkpoints import load_detection_model
    from core.families import family_of

    repo = Path(__file__).resolve().parents[1]
    config = load_config(repo / "examples" / example)
    assert {e.target for e in config.build} >= {"torch", "onnxruntime", "openvino"}
    assert config.prune is not None and config.finetune is not None and config.gate is not None
    assert config.gate.budgets is not None and config.gate.budgets.is_file()
    assert family_of(load_detection_model(config.model)) == family


def test_unknown_key_suggests_the_nearest_valid_one(tmp_path, minimal):
    minimal["bench"] = {"min_second": 2}
    with pytest.raises(InputError, match=r"'bench.min_second': unknown key; did you mean `min_seconds`\?"):
        load_config(write(tmp_path, minimal))


def test_unknown_target_option_suggests_the_nearest_valid_one(tmp_path, minimal):
    minimal["build"] = [{"target": "onnxruntime", "precision": "int8", "options": {"activation": "QInt8"}}]
    with pytest.raises(
        InputError, match=r"build\[0\].*'activation': unknown key; did you mean `activations`"
    ):
        load_config(write(tmp_path, minimal))


def test_yaml_error_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("model: m.pt\ndata: [\n")
    with pytest.raises(InputError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: invalid YAML at line 3") and "<unicode string>" not in message
