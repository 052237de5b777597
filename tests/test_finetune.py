"""Fine-tuning: the trainer keeps the pruned shape, distillation adds a kd loss, saves no teacher."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.errors import InputError
from pipeline.cli.finetune import command
from pipeline.stages.finetune import FinetuneConfig, finetune

IMGSZ = 64


@pytest.fixture(scope="module")
def teacher_and_pruned(tmp_path_factory, synth_dataset) -> tuple[Path, Path]:
    """A tiny 6-class model (the synthetic dataset's classes) and a copy pruned to 60% of its MACs."""
    from conftest import tiny_detection_model

    from core.checkpoints import save_checkpoint
    from pipeline.pruning.config import MagnitudeConfig
    from pipeline.stages.prune import prune_checkpoint

    folder = tmp_path_factory.mktemp("finetune")
    teacher = save_checkpoint(tiny_detection_model(nc=6), folder / "teacher.pt")
    config = MagnitudeConfig(macs=0.6, round_to=2, max_layer_ratio=0.6, min_channels=0, bn_batches=0)
    prune_checkpoint(teacher, folder / "pruned.pt", config, imgsz=IMGSZ, device="cpu", data=None)
    return teacher, folder / "pruned.pt"


def _params(path: Path) -> int:
    from core.checkpoints import count_params, load_detection_model

    return count_params(load_detection_model(path))


def _train(pruned: Path, data: Path, out_dir: Path, teacher: Path | None = None, **options) -> Path:
    config = FinetuneConfig(epochs=1, batch=8, workers=0, **options)
    return finetune(
        pruned,
        data,
        out_dir / "best.pt",
        config,
        imgsz=IMGSZ,
        device="cpu",
        run_dir=out_dir / "run",
        teacher=teacher,
    )


def test_trainer_keeps_the_pruned_shape_and_reloads_in_a_fresh_process(
    teacher_and_pruned, synth_dataset, tmp_path
):
    _, pruned = teacher_and_pruned
    best = _train(pruned, synth_dataset, tmp_path)
    assert _params(best) == _params(pruned) < _params(teacher_and_pruned[0])
    code = f"from ultralytics import YOLO; print(sum(p.numel() for p in YOLO(r'{best}').model.parameters()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout.strip().splitlines()[-1]) == _params(pruned)


def test_distillation_adds_a_finite_kd_loss_and_leaves_no_teacher(
    teacher_and_pruned, synth_dataset, tmp_path
):
    teacher, pruned = teacher_and_pruned
    best = _train(pruned, synth_dataset, tmp_path, teacher=teacher)
    with open(tmp_path / "run" / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    kd = [float(row["train/kd_loss"]) for row in rows]
    assert kd and all(torch.isfinite(torch.tensor(kd))) and all(v > 0 for v in kd)
    checkpoint = torch.load(best, map_location="cpu", weights_only=False)
    model = checkpoint["model"]
    assert getattr(model, "criterion", None) is None
    assert sum(p.numel() for p in model.parameters()) == _params(pruned)


def test_distillation_loss_vanishes_for_a_perfect_student_and_has_gradients():
    from pipeline.pruning.distill import distillation_loss

    torch.manual_seed(0)
    teacher = {"scores": torch.randn(2, 3, 10), "boxes": torch.randn(2, 64, 10)}
    student = {k: v.clone().requires_grad_(True) for k, v in teacher.items()}
    other = {k: (v + torch.randn_like(v)).requires_grad_(True) for k, v in teacher.items()}
    same, different = distillation_loss(student, teacher), distillation_loss(other, teacher)
    assert different > same
    different.backward()
    assert all(torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0 for t in other.values())
    same.backward()
    assert student["boxes"].grad.abs().max() < 1e-6  # the LD term is at its minimum


def test_with_one_box_bin_the_box_term_is_an_l1_on_the_edge_distances():
    """YOLO26 regresses its four edge distances directly: a KL over one bin would always be zero."""
    from pipeline.pruning.distill import distillation_loss

    torch.manual_seed(0)
    teacher = {"scores": torch.full((2, 3, 10), 8.0), "boxes": torch.rand(2, 4, 10) * 5}
    same = {k: v.clone() for k, v in teacher.items()}
    shifted = {"scores": same["scores"], "boxes": (same["boxes"] + 0.5).requires_grad_(True)}
    box_term = distillation_loss(shifted, teacher) - distillation_loss(same, teacher)
    assert box_term.item() == pytest.approx(0.5, rel=1e-3)  # every edge 0.5 strides off, confident teacher
    box_term.backward()
    assert (shifted["boxes"].grad > 0).all()


def _end_to_end_pair():
    """A YOLO26n student in training mode with its labelled criterion, and itself as an eval-mode teacher."""
    import copy

    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    student = DetectionModel("yolo26n.yaml", nc=6, verbose=False)
    student.end2end = True  # inference reads the one-to-one branch, as in a trained YOLO26 checkpoint
    student.args = get_cfg()
    teacher = copy.deepcopy(student).eval()
    return student.train(), teacher


def test_an_end_to_end_student_distils_both_branches_with_the_labelled_losss_gains():
    from pipeline.pruning.distill import DistillationLoss, distillation_loss

    student, teacher = _end_to_end_pair()
    criterion = DistillationLoss(student.init_criterion(), teacher, 1.0, label_weight=0.0)
    batch = {
        "img": torch.rand(2, 3, 64, 64),
        "batch_idx": torch.tensor([0.0, 1.0]),
        "cls": torch.tensor([[0.0], [1.0]]),
        "bboxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.4, 0.4, 0.3, 0.3]]),
    }
    preds = student(batch["img"])
    total, items = criterion(preds, batch)
    with torch.no_grad():
        raw = teacher(batch["img"])[1]
    labelled = criterion.detection_loss
    expected = labelled.o2m * distillation_loss(preds["one2many"], raw["one2many"]) + labelled.o2o * (
        distillation_loss(preds["one2one"], raw["one2one"])
    )
    assert items["kd_loss"] == pytest.approx(expected.item(), rel=1e-5) and items["kd_loss"] > 0
    total.sum().backward()
    head = student.model[-1]
    for name, branch in (("one-to-one", head.one2one_cv2), ("one-to-many", head.cv2)):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in branch.parameters()), name
    assert student.model[0].conv.weight.grad.abs().sum() > 0  # the backbone learns through one-to-many
    before = labelled.o2o
    criterion.update()
    assert labelled.o2o > before  # the trainer's per-step update reaches E2ELoss's schedule


@pytest.mark.slow  # about 40 s on one core: one epoch of a YOLO26n at 64 px
def test_a_yolo26_student_fine_tunes_with_distillation_and_stays_end_to_end(synth_dataset, tmp_path):
    from ultralytics import YOLO

    from core.checkpoints import save_checkpoint

    student, teacher = _end_to_end_pair()
    for model in (student, teacher):
        model.names = {i: f"shape{i}" for i in range(6)}
    pruned = save_checkpoint(student.eval(), tmp_path / "student.pt")
    unpruned = save_checkpoint(teacher, tmp_path / "teacher.pt")
    out = _train(pruned, synth_dataset, tmp_path, teacher=unpruned)
    with open(tmp_path / "run" / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert all(float(row["train/kd_loss"]) > 0 for row in rows)
    head = YOLO(out).model.model[-1]
    assert head.end2end and head.reg_max == 1


def test_the_configured_label_weight_reaches_the_trainers_loss(
    teacher_and_pruned, synth_dataset, tmp_path, monkeypatch
):
    import pipeline.pruning.trainer as trainer

    seen = []

    class Recording(trainer.DistillationLoss):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.label_weight)

    monkeypatch.setattr(trainer, "DistillationLoss", Recording)
    teacher, pruned = teacher_and_pruned
    _train(pruned, synth_dataset, tmp_path, teacher=teacher, label_weight=0.25)
    assert seen == [0.25]


def test_label_weight_scales_the_labelled_terms_only_and_they_are_still_reported():
    from torch import nn

    from pipeline.pruning.distill import DistillationLoss

    torch.manual_seed(0)
    outputs = {"scores": torch.randn(2, 3, 10), "boxes": torch.randn(2, 64, 10)}

    class Teacher(nn.Module):
        def forward(self, img):
            return None, outputs

    class Labelled:  # Ultralytics' criterion: (box, cls, dfl) x batch size, and its loss items
        def __call__(self, preds, batch):
            return torch.tensor([1.0, 2.0, 3.0]), {"box_loss": torch.tensor(0.5)}

    batch = {"img": torch.zeros(2, 3, 8, 8)}
    preds = (None, outputs)
    full, items = DistillationLoss(Labelled(), Teacher(), 1.0)(preds, batch)
    alone, alone_items = DistillationLoss(Labelled(), Teacher(), 1.0, label_weight=0.0)(preds, batch)
    assert full[:3].tolist() == [1.0, 2.0, 3.0] and alone[:3].tolist() == [0.0, 0.0, 0.0]
    assert alone[3] == full[3] > 0  # the distillation term is untouched
    assert alone_items["box_loss"] == items["box_loss"] == 0.5


def _three_class_checkpoint(folder: Path) -> Path:
    """A model whose head does not fit the 6-class synthetic dataset."""
    from conftest import tiny_detection_model

    from core.checkpoints import save_checkpoint

    return save_checkpoint(tiny_detection_model(nc=3), folder / "three.pt")


def test_class_count_mismatch_fails_clearly_and_writes_nothing(synth_dataset, tmp_path):
    out = tmp_path / "best.pt"
    three = _three_class_checkpoint(tmp_path)
    with pytest.raises(InputError, match="names lists 6 classes but the model predicts 3"):
        command(model=three, data=synth_dataset, epochs=1, output=out, imgsz=IMGSZ)
    assert not out.exists()


def test_unreadable_model_and_mismatched_teacher_fail_clearly(tmp_path, synth_dataset, teacher_and_pruned):
    out = tmp_path / "best.pt"
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x00" * 10)
    with pytest.raises(InputError, match=r"broken\.pt"):
        command(model=broken, data=synth_dataset, epochs=1, output=out)
    with pytest.raises(InputError, match="teacher head"):
        command(
            model=teacher_and_pruned[1],
            data=synth_dataset,
            epochs=1,
            output=out,
            teacher=_three_class_checkpoint(tmp_path),
        )
    assert not out.exists()


def test_iterative_prune_then_finetune_reaches_the_target(teacher_and_pruned, synth_dataset, tmp_path):
    from pipeline.pruning.config import MagnitudeConfig
    from pipeline.stages.prune import prune_checkpoint

    config = MagnitudeConfig(
        macs=0.6,
        steps=2,
        finetune_epochs_per_step=1,
        round_to=2,
        max_layer_ratio=0.6,
        min_channels=0,
        bn_batches=0,
        batch=8,
    )
    out = tmp_path / "pruned.pt"
    report = prune_checkpoint(
        teacher_and_pruned[0], out, config, imgsz=IMGSZ, device="cpu", data=synth_dataset
    )
    assert report.gflops_ratio <= 0.6
    assert _params(out) == report.params_after


def test_reconstructed_student_distils_features_and_trains_on_pseudo_labelled_images(synth_dataset, tmp_path):
    """Data-aware pruning on an image folder, then a fine-tune with feature distillation, unlabelled
    images pseudo-labelled by the teacher, and checkpoint selection on held-apart training images."""
    from conftest import tiny_detection_model

    from core.checkpoints import checkpoint_metadata, save_checkpoint
    from pipeline.pruning.config import AutoConfig
    from pipeline.stages.prune import prune_checkpoint

    teacher = save_checkpoint(tiny_detection_model(nc=6), tmp_path / "teacher.pt")
    images = synth_dataset.parent / "images" / "train"
    config = AutoConfig(macs=0.7, round_to=2, max_layer_ratio=0.6, min_channels=0, calib_images=8)
    report = prune_checkpoint(teacher, tmp_path / "p.pt", config, imgsz=IMGSZ, device="cpu", data=images)
    assert report.gflops_ratio <= 0.7
    record = checkpoint_metadata(tmp_path / "p.pt")["pruning"]
    assert record["method"] == "reconstruct"
    assert len(record["kept_features"]) == 3

    run = tmp_path / "ft"
    config = FinetuneConfig(
        epochs=1, batch=8, workers=0, unlabelled=images, checkpoint="best", holdout=0.25, threads=2
    )
    best = finetune(
        tmp_path / "p.pt",
        synth_dataset,
        run / "best.pt",
        config,
        imgsz=IMGSZ,
        device="cpu",
        run_dir=run / "run",
        teacher=teacher,
    )
    assert _params(best) == _params(tmp_path / "p.pt")
    train = (run / "data" / "train.txt").read_text().split()
    held = (run / "data" / "val.txt").read_text().split()
    resolved = {str(Path(p).resolve()) for p in train}
    assert held and not {str(Path(p).resolve()) for p in held} & resolved  # held-apart never trains
    pseudo = sorted((run / "data" / "pseudo" / "labels").glob("*.txt"))
    assert len(pseudo) == len(list(images.iterdir())) - len(held)
    assert torch.get_num_threads() == 2
    assert best.read_bytes() == (run / "run" / "weights" / "best.pt").read_bytes()


def test_unlabelled_images_need_a_teacher_and_an_empty_folder_fails(
    teacher_and_pruned, synth_dataset, tmp_path
):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "best.pt"
    with pytest.raises(InputError, match="need a teacher"):
        command(model=teacher_and_pruned[1], data=synth_dataset, epochs=1, output=out, unlabelled=empty)
    with pytest.raises(InputError, match="no images found") as error:
        command(
            model=teacher_and_pruned[1],
            data=synth_dataset,
            epochs=1,
            output=out,
            unlabelled=empty,
            teacher=teacher_and_pruned[0],
            imgsz=IMGSZ,
            workers=0,
        )
    assert str(empty) in str(error.value)
    assert not out.exists()


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_batchnorm_statistics_stay_frozen_unless_asked_to_train(
    teacher_and_pruned, synth_dataset, tmp_path, freeze_bn
):
    """Frozen BatchNorm keeps the running means pruning folded its intercepts into; --train-bn moves them."""
    from core.checkpoints import load_detection_model

    _, pruned = teacher_and_pruned
    config = FinetuneConfig(epochs=1, batch=8, workers=0, freeze_bn=freeze_bn)
    best = finetune(
        pruned,
        synth_dataset,
        tmp_path / "best.pt",
        config,
        imgsz=IMGSZ,
        device="cpu",
        run_dir=tmp_path / "run",
    )

    def means(path: Path) -> torch.Tensor:
        model = load_detection_model(path)
        return torch.cat([m.running_mean for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)])

    before, after = means(pruned), means(best)
    assert before.shape == after.shape
    assert torch.equal(before, after) is freeze_bn
    # The default keeps the last epoch, trained on every image: nothing held apart.
    assert best.read_bytes() == (tmp_path / "run" / "weights" / "last.pt").read_bytes()
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("bf16_units", "amp", "trained_in"),
    [(True, True, torch.bfloat16), (True, False, torch.float32), (False, True, torch.float32)],
    ids=["bf16-units", "amp-off", "no-bf16-units"],
)
def test_cpu_training_runs_in_bf16_only_where_the_cpu_has_bf16_units_and_amp_is_on(
    teacher_and_pruned, synth_dataset, tmp_path, monkeypatch, bf16_units, amp, trained_in
):
    """The dtype the student's convolutions produce while training, with and without bf16 units."""
    import ultralytics.engine.trainer as engine

    import pipeline.pruning.trainer as trainer

    monkeypatch.setattr(trainer, "cpu_runs_bf16_natively", lambda: bf16_units)
    seen: set[torch.dtype] = set()
    conv_forward = torch.nn.Conv2d._conv_forward

    def recording(self, *args):
        out = conv_forward(self, *args)
        if self.training:  # the student; the teacher runs in eval mode
            seen.add(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "_conv_forward", recording)
    autocast, check_amp = engine.autocast, engine.check_amp
    teacher, pruned = teacher_and_pruned
    best = _train(pruned, synth_dataset, tmp_path, teacher=teacher, amp=amp)
    assert seen == {trained_in}
    assert (engine.autocast, engine.check_amp) == (autocast, check_amp)  # Ultralytics is left as it was
    assert _params(best) == _params(pruned)
