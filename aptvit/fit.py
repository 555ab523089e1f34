r"""Pre-train APT-ViT on CryoEngine datasets: ``python -m aptvit.fit --config CONFIG.yaml``.

Wiring only: LightningCLI builds the encoder (``aptvit.models.build_encoder``), the
:class:`~aptvit.training.PretrainModule` and the :class:`~aptvit.data.SubtomogramDataModule` from the YAML
(every knob typed and documented in their signatures; an unknown key is an error), validates the untrained
encoder once (the kNN baseline), fits, and prints where the checkpoints and logs are.

Examples
--------
CPU demo (minutes on 2 cores)::

    python -m aptvit.fit --config configs/pretrain_demo.yaml

One GPU, then resume a killed run from its last checkpoint::

    python -m aptvit.fit --config configs/pretrain_gpu.yaml
    python -m aptvit.fit --config configs/pretrain_gpu.yaml --ckpt_path last

Several GPUs on several nodes (SLURM; one task per GPU)::

    srun python -m aptvit.fit --config configs/pretrain_multinode.yaml \\
        --trainer.devices 4 --trainer.num_nodes 2

``python -m aptvit.fit --help`` lists every argument; ``--print_config`` prints the resolved YAML.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from aptvit.data import SubtomogramDataModule
from aptvit.training import PretrainModule

__all__ = ["main"]


class PretrainCLI(LightningCLI):
    """LightningCLI with a resume argument (``--ckpt_path PATH|last``) and a pre-training kNN baseline."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add ``--ckpt_path`` and ``--validate_before``."""
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="Resume from this checkpoint, or 'last' for the newest last.ckpt of the run.",
        )
        parser.add_argument(
            "--validate_before",
            type=bool,
            default=True,
            help="Validate the untrained encoder first, so the log holds the kNN accuracy before training.",
        )


def main(args: list[str] | None = None) -> dict[str, float]:
    """Run the pre-training CLI.

    Returns
    -------
    dict
        ``knn_before`` (NaN when not validated first) and ``knn_after`` validation kNN accuracies.
    """
    cli = PretrainCLI(
        PretrainModule,
        SubtomogramDataModule,
        run=False,
        args=args,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
    )
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    ckpt_path = cli.config.get("ckpt_path")
    before = float("nan")
    if cli.config.get("validate_before") and ckpt_path is None:
        before = float(trainer.validate(model, datamodule=data, verbose=False)[0]["val/knn_accuracy"])
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    after = float(trainer.callback_metrics.get("val/knn_accuracy", float("nan")))
    if trainer.is_global_zero:
        dirpath = getattr(trainer.checkpoint_callback, "dirpath", None)
        directory = Path(dirpath) if dirpath else None
        logs = Path(trainer.log_dir) if trainer.log_dir else None
        print(f"checkpoints: {directory}  (last.ckpt, best by val/knn_accuracy)", file=sys.stderr)
        print(f"logs: {logs}", file=sys.stderr)
        print(f"validation kNN accuracy: before {before:.3f}, after {after:.3f}", file=sys.stderr)
    return {"knn_before": before, "knn_after": after}


if __name__ == "__main__":
    main()
