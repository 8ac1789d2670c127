"""The Training dashboard: one TrainingJob's progress, quality, throughput and restarts."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as gd

from dashboards.panels import TRAINING, base, graph, single, variable


def training() -> gd.Dashboard:
    quantity = f"{{{TRAINING}}}"
    board = base(
        "Modelyard / Training",
        "modelyard-training",
        "Per TrainingJob: progress, loss and accuracy, throughput, input pipeline, GPU memory and restarts.",
        [
            variable("namespace", "Namespace", "label_values(modelyard_training_epoch, namespace)"),
            variable(
                "trainingjob",
                "TrainingJob",
                'label_values(modelyard_training_epoch{namespace=~"$namespace"}, trainingjob)',
            ),
        ],
    )
    return (
        board.with_row(gd.Row("Progress"))
        .with_panel(
            single(
                "Progress",
                "Share of the planned optimizer steps done.",
                "percentunit",
                [(f"max by (trainingjob) (modelyard_training_progress_ratio{quantity})", "{{trainingjob}}")],
            )
        )
        .with_panel(
            single(
                "Epoch",
                "Current epoch and the planned total.",
                "none",
                [
                    (f"max by (trainingjob) (modelyard_training_epoch{quantity})", "{{trainingjob}} epoch"),
                    (f"max by (trainingjob) (modelyard_training_total_epochs{quantity})", "{{trainingjob}} of"),
                ],
            )
        )
        .with_panel(
            single(
                "ETA",
                "Estimated time until training ends, from the recent step rate.",
                "s",
                [(f"max by (trainingjob) (modelyard_training_eta_seconds{quantity})", "{{trainingjob}}")],
            )
        )
        .with_panel(
            single(
                "Since last progress",
                "Seconds since the trainer last reported progress; the TrainingJobStalled alert watches this.",
                "s",
                [
                    (
                        f"time() - max by (trainingjob) (modelyard_training_last_progress_timestamp_seconds{quantity})",
                        "{{trainingjob}}",
                    )
                ],
            )
        )
        .with_panel(
            single(
                "Resumes",
                "Times training went back to a checkpoint over the time range (a restarted or replaced trainer "
                "resumes there, so its step count drops): the TrainingJob's restarts, seen from its metrics.",
                "none",
                [
                    (
                        "sum by (trainingjob) "
                        f"(resets(max by (namespace, trainingjob) (modelyard_training_step{quantity})[$__range:]))",
                        "{{trainingjob}}",
                    )
                ],
                width=8,
            )
        )
        .with_panel(
            graph(
                "Epoch progress",
                "Share of the planned optimizer steps done, over time.",
                "percentunit",
                [(f"max by (trainingjob) (modelyard_training_progress_ratio{quantity})", "{{trainingjob}}")],
            )
        )
        .with_panel(
            graph(
                "Step",
                "Optimizer steps done.",
                "none",
                [(f"max by (trainingjob) (modelyard_training_step{quantity})", "{{trainingjob}}")],
            )
        )
        .with_row(gd.Row("Model quality"))
        .with_panel(
            graph(
                "Loss",
                "Training loss (running mean of recent steps) and validation loss (per epoch).",
                "none",
                [
                    (f"max by (trainingjob) (modelyard_training_loss{quantity})", "{{trainingjob}} train"),
                    (f"max by (trainingjob) (modelyard_training_val_loss{quantity})", "{{trainingjob}} validation"),
                ],
            )
        )
        .with_panel(
            graph(
                "Validation accuracy",
                "Top-1 accuracy on the validation set after each epoch.",
                "percentunit",
                [(f"max by (trainingjob) (modelyard_training_val_accuracy{quantity})", "{{trainingjob}}")],
            )
        )
        .with_row(gd.Row("Throughput and resources"))
        .with_panel(
            graph(
                "Images per second",
                "Training images processed per second, all ranks together.",
                "none",
                [(f"sum by (trainingjob) (modelyard_training_images_per_second{quantity})", "{{trainingjob}}")],
                width=8,
            )
        )
        .with_panel(
            graph(
                "Data-wait fraction",
                "Share of step time spent waiting for the DataLoader: high means the input pipeline is the bottleneck.",
                "percentunit",
                [(f"max by (trainingjob) (modelyard_training_data_wait_fraction{quantity})", "{{trainingjob}}")],
                width=8,
            )
        )
        .with_panel(
            graph(
                "GPU memory",
                "Peak GPU memory allocated by each trainer process (0 when training on the CPU).",
                "bytes",
                [(f"max by (trainingjob, instance) (modelyard_training_gpu_memory_bytes{quantity})", "{{instance}}")],
                width=8,
            )
        )
    )
