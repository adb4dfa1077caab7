"""Training CAST on your own images: MoCo-v3 adaptation, DeiT-style fine-tune, linear probe (spec §6).

    from cast.train import MocoConfig, train
    result = train(MocoConfig(data="photos/", output="runs/moco.safetensors", checkpoint="cast_small_moco_in1k",
                              steps=200, batch_size=8))

The same jobs run headless with `cast train {moco,supervised,probe} --data DIR --out PATH` (also `python -m
cast.train ...`, and under `torchrun ... -m cast.train ...`; the command line lives in `cast.cli.train`).
"""
from ..datasets import DatasetReport
from ..errors import DatasetError, TrainingError
from .common import remove_resume_state, run_files
from .config import (
    CONFIGS,
    LinearProbeConfig,
    MocoConfig,
    SupervisedConfig,
    TrainConfig,
    config_from_dict,
)
from .engine import TrainResult, build_job, train

__all__ = [
    "CONFIGS", "DatasetError", "DatasetReport", "LinearProbeConfig", "MocoConfig", "SupervisedConfig", "TrainConfig",
    "TrainResult", "TrainingError", "build_job", "config_from_dict", "remove_resume_state", "run_files", "train",
]  # fmt: skip
