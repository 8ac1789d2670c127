"""TrainingJob: train the proposal's classifier on a dataset, save the best model, optionally promote it.

The spec is also the trainer's configuration file (`modelyard train --config spec.yaml`): one model for both, so the
cluster and a laptop run exactly the same recipe. Defaults are the technical proposal's.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from modelyard.api.common import (
    API_VERSION,
    ApiModel,
    Condition,
    DnsLabel,
    ModelName,
    ObjectMeta,
    PersistentVolumeClaimRef,
    Quantity,
    Toleration,
)


class Backbone(enum.StrEnum):
    RESNET18 = "resnet18"
    RESNET34 = "resnet34"
    RESNET50 = "resnet50"
    RESNET101 = "resnet101"


class ModelSpec(ApiModel):
    """The network: a torchvision ResNet, multi-head self-attention over its feature map, dropout, a classifier."""

    backbone: Backbone = Field(default=Backbone.RESNET50, description="torchvision ResNet used as feature extractor.")
    pretrained: bool = Field(
        default=True,
        description="Start the backbone from ImageNet weights. They are never downloaded at run time: see weights.",
    )
    weights: str | None = Field(
        default=None,
        max_length=4096,
        description=(
            "Where the pretrained backbone weights are: a local path or file:// URI of a torchvision state dict. "
            "Unset: the torchvision cache ($TORCH_HOME/hub/checkpoints) under the standard file name."
        ),
    )
    num_classes: int = Field(default=10, ge=2, le=100_000, description="Number of classes the classifier predicts.")
    dropout_rate: float = Field(default=0.3, ge=0.0, lt=1.0, description="Dropout before the classifier.")
    attention_heads: int = Field(default=8, ge=1, le=64, description="Heads of the multi-head self-attention.")
    hidden_dim: int = Field(
        default=512, ge=8, le=8192, description="Width the feature map is projected to; a multiple of attentionHeads."
    )
    freeze_batch_norm: bool = Field(
        default=False,
        description=(
            "Keep the backbone's BatchNorm layers as pretrained: they normalise with the stored ImageNet statistics "
            "and their scales and shifts are not trained, as detection fine-tuning does. A step then computes no "
            "batch statistics (1.35x the images/s of ResNet-50 on an H200, half the memory) and does not depend on the "
            "per-GPU batch size. Needs pretrained."
        ),
    )

    @model_validator(mode="after")
    def _heads_divide_hidden_dim(self) -> Self:
        if self.hidden_dim % self.attention_heads:
            raise ValueError(
                f"model.hiddenDim ({self.hidden_dim}) must be a multiple of "
                f"model.attentionHeads ({self.attention_heads})"
            )
        return self

    @model_validator(mode="after")
    def _frozen_batch_norm_needs_pretrained(self) -> Self:
        # Untrained BatchNorm layers hold mean 0 and variance 1: frozen, they would not normalise anything.
        if self.freeze_batch_norm and not self.pretrained:
            raise ValueError("model.freezeBatchNorm needs model.pretrained: untrained statistics normalise nothing")
        return self


class Optimizer(enum.StrEnum):
    ADAMW = "adamw"
    SGD = "sgd"


class Scheduler(enum.StrEnum):
    COSINE = "cosine"
    CONSTANT = "constant"


class Precision(enum.StrEnum):
    AUTO = "auto"
    BF16 = "bf16"
    FP16 = "fp16"
    FP32 = "fp32"


class MetricName(enum.StrEnum):
    VAL_ACCURACY = "valAccuracy"
    VAL_LOSS = "valLoss"

    @property
    def higher_is_better(self) -> bool:
        return self is MetricName.VAL_ACCURACY


class EarlyStopping(ApiModel):
    """Stop when the validation metric has not improved for `patience` epochs."""

    enabled: bool = Field(default=False, description="Turn early stopping on.")
    metric: MetricName = Field(default=MetricName.VAL_ACCURACY, description="Validation metric watched.")
    patience: int = Field(default=5, ge=1, le=1000, description="Epochs without improvement before stopping.")
    min_delta: float = Field(default=0.0, ge=0.0, description="Smallest change that counts as an improvement.")


class TrainingSpec(ApiModel):
    """The optimisation recipe (proposal: AdamW, lr 1e-3, batch 32, cosine schedule, weight decay 1e-4)."""

    epochs: int = Field(default=10, ge=1, le=10_000, description="Passes over the training set.")
    batch_size: int = Field(default=32, ge=1, le=65_536, description="Images per step on each GPU (or process).")
    learning_rate: float = Field(default=1e-3, gt=0.0, le=10.0, description="Peak learning rate after warm-up.")
    optimizer: Optimizer = Field(default=Optimizer.ADAMW, description="Optimizer.")
    scheduler: Scheduler = Field(default=Scheduler.COSINE, description="Learning-rate schedule after warm-up.")
    warmup_epochs: float = Field(default=1.0, ge=0.0, le=1000.0, description="Linear warm-up length, in epochs.")
    weight_decay: float = Field(default=1e-4, ge=0.0, le=1.0, description="Decoupled weight decay.")
    gradient_accumulation_steps: int = Field(
        default=1, ge=1, le=1024, description="Micro-batches summed before each optimizer step."
    )
    gradient_clip_norm: float | None = Field(
        default=1.0, gt=0.0, description="Clip the global gradient norm to this value; unset turns clipping off."
    )
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0, description="Label smoothing of the loss.")
    precision: Precision = Field(
        default=Precision.AUTO,
        description="auto: bf16 on GPUs that support it, else fp32. fp16 uses a gradient scaler.",
    )
    compile: bool = Field(default=False, description="torch.compile the model.")
    cuda_graphs: bool = Field(
        default=False,
        description=(
            "Replay the compiled forward and backward passes from CUDA graphs (torch.compile's reduce-overhead "
            "mode): one replay instead of hundreds of kernel launches per step, the same weights to the bit. "
            "Worth it when the host is the limit (small models or batches); ResNet-50 at batch 256 on an H100 "
            "gained 3% on synthetic data. Needs compile and gradientAccumulationSteps 1: with accumulation, "
            "PyTorch 2.11's replays overwrite tensors the previous micro-batch still needs and the step fails. "
            "No effect on a CPU."
        ),
    )
    channels_last: bool = Field(default=True, description="Use the channels_last memory format.")
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping, description="Early stopping.")
    seed: int = Field(default=42, ge=0, le=2**32 - 1, description="Seed of every random generator.")
    log_every_steps: int = Field(default=20, ge=1, description="Steps between progress reports.")
    max_steps_per_epoch: int | None = Field(
        default=None, ge=1, description="Cap on optimizer steps per epoch (smoke runs and benchmarks)."
    )

    @model_validator(mode="after")
    def _cuda_graphs_need_compile_and_no_accumulation(self) -> Self:
        if self.cuda_graphs and not self.compile:
            raise ValueError("training.cudaGraphs needs training.compile: the graphs are torch.compile's")
        if self.cuda_graphs and self.gradient_accumulation_steps > 1:
            # PyTorch 2.11 fails the step: a micro-batch's replay overwrites tensors the one before still needs.
            raise ValueError("training.cudaGraphs needs training.gradientAccumulationSteps 1")
        return self


class ClassBalancing(enum.StrEnum):
    NONE = "none"
    WEIGHTED_SAMPLER = "weightedSampler"


class ColorJitter(ApiModel):
    brightness: float = Field(default=0.2, ge=0.0, le=1.0, description="Brightness jitter.")
    contrast: float = Field(default=0.2, ge=0.0, le=1.0, description="Contrast jitter.")
    saturation: float = Field(default=0.0, ge=0.0, le=1.0, description="Saturation jitter.")
    hue: float = Field(default=0.0, ge=0.0, le=0.5, description="Hue jitter.")
    p: float = Field(default=0.5, ge=0.0, le=1.0, description="Probability of applying it.")


class GaussNoise(ApiModel):
    # The proposal's var_limit=(10, 50) on 0..255 pixels is std 3.2..7.1, i.e. 0.012..0.028 of the range.
    std_range: tuple[float, float] = Field(
        default=(0.012, 0.028), description="Noise standard deviation range, as a fraction of the pixel range."
    )
    p: float = Field(default=0.3, ge=0.0, le=1.0, description="Probability of applying it.")


class Augmentation(ApiModel):
    """Training augmentation (the proposal's albumentations preset). Evaluation only resizes and normalises."""

    horizontal_flip: float = Field(default=0.5, ge=0.0, le=1.0, description="Probability of a horizontal flip.")
    random_rotate90: float = Field(default=0.5, ge=0.0, le=1.0, description="Probability of a 90-degree rotation.")
    color_jitter: ColorJitter = Field(default_factory=ColorJitter, description="Colour jitter.")
    gauss_noise: GaussNoise = Field(default_factory=GaussNoise, description="Gaussian noise.")
    random_resized_crop: bool = Field(
        default=False, description="Random-resized crop instead of a plain resize (ImageNet-style training)."
    )


class Normalization(ApiModel):
    mean: tuple[float, float, float] = Field(default=(0.485, 0.456, 0.406), description="Per-channel mean (RGB).")
    std: tuple[float, float, float] = Field(default=(0.229, 0.224, 0.225), description="Per-channel std (RGB).")


class InputPipeline(enum.StrEnum):
    CPU = "cpu"
    GPU = "gpu"


# The CRD reference and `kubectl explain` show this text: what `gpu` does and every way it differs from `cpu`.
PIPELINE_DESCRIPTION = (
    "Where training images are decoded and augmented. cpu: DataLoader workers decode with PIL and run the "
    "albumentations pipeline. gpu: workers only read the files (JPEGs as bytes; other formats decoded to RGB with "
    "PIL) and draw each image's augmentation parameters from its sample seed; the training device decodes a batch's "
    "JPEGs in one torchvision.io.decode_jpeg call (nvJPEG on CUDA), crops (randomResizedCrop: albumentations' box, "
    "scale 0.08-1, ratio 3/4-4/3) or resizes to imageSize bilinearly as cv2 INTER_LINEAR (no antialiasing), then "
    "flips, rotates, jitters colour (each image's steps in its own random order, as albumentations does), adds "
    "noise and normalises, batched with per-image parameters. Validation decodes, resizes and normalises on the "
    "device the same way. The same transforms and parameter distributions as cpu, not the same pixels: values stay "
    "float in [0, 1] between steps where cpu rounds to uint8 after each (within one level after resizing); hue "
    "shifts in float HSV (cpu: OpenCV's 8-bit HSV, 2-degree steps); a batch's noise comes from one generator "
    "seeded by its sample seeds; nvJPEG's decoded pixels differ from PIL's (which the service decodes with) by "
    "about 3 levels on average, up to 35 (measured on photo-like JPEGs). An unreadable JPEG is found at decode "
    "time, skipped, counted and logged as on cpu, its slot filled with another image of the batch."
)


class DataSpec(ApiModel):
    """Where the dataset lives and how it is read: one folder per class (torchvision ImageFolder layout)."""

    pvc: PersistentVolumeClaimRef | None = Field(
        default=None, description="Volume holding the dataset, mounted read-only at /data in the training pods."
    )
    path: str = Field(
        min_length=1,
        max_length=4096,
        description="Dataset folder (or file:// URI) as the trainer sees it, e.g. /data/flowers; class folders inside.",
    )
    val_path: str | None = Field(
        default=None, max_length=4096, description="Separate validation folder; unset splits path by validationSplit."
    )
    format: Literal["imageFolder"] = Field(default="imageFolder", description="Dataset layout.")
    image_size: int = Field(default=224, ge=8, le=2048, description="Side of the square network input, in pixels.")
    validation_split: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="Fraction held out for validation when valPath is unset."
    )
    augmentation: Augmentation = Field(default_factory=Augmentation, description="Training augmentation.")
    normalization: Normalization = Field(default_factory=Normalization, description="Input normalisation.")
    class_balancing: ClassBalancing = Field(
        default=ClassBalancing.NONE, description="weightedSampler draws classes with balanced weights."
    )
    num_workers: int = Field(default=4, ge=0, le=128, description="DataLoader worker processes per GPU.")
    pipeline: InputPipeline = Field(default=InputPipeline.CPU, description=PIPELINE_DESCRIPTION)
    host_decode_share: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="pipeline gpu only: the share of JPEGs the DataLoader workers decode on the host "
        "(libjpeg-turbo, PIL's pixels) instead of the device's decoder, chosen by sample index so the choice does not "
        "depend on the number of workers, as DALI's hw_decoder_load splits a batch. The pixels then travel to the "
        "device uncompressed, 6x the bytes: on an H100, 0.3 and 0.6 trained slower than 0 (0.89x, 0.77x). 0 sends "
        "every whole JPEG to the device.",
    )
    max_bad_image_fraction: float = Field(
        default=0.01, ge=0.0, le=1.0, description="Fraction of unreadable images tolerated before training stops."
    )


class ResourcesSpec(ApiModel):
    """Where and how big the training pods are."""

    num_nodes: int = Field(default=1, ge=1, le=256, description="Pods (nodes) that train together.")
    gpus_per_node: int = Field(default=1, ge=0, le=16, description="GPUs per pod; 0 trains on the CPU.")
    cpu: Quantity = Field(default="8", description="CPU request and limit of each pod.")
    memory: Quantity = Field(default="32Gi", description="Memory request and limit of each pod.")
    shm_size: Quantity = Field(default="8Gi", description="Size of the memory-backed /dev/shm for DataLoader workers.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the pods must match.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerations of the pods.")
    priority_class_name: str | None = Field(default=None, max_length=253, description="PriorityClass of the pods.")
    image: str | None = Field(
        default=None, max_length=1024, description="Trainer image; unset uses the operator's default image."
    )
    service_account_name: str | None = Field(
        default=None, max_length=253, description="ServiceAccount of the pods; unset uses the operator's trainer one."
    )


class OutputSpec(ApiModel):
    """Where the trained model goes: a BentoML model store on a volume."""

    model_name: ModelName = Field(description="Name of the model in the BentoML model store.")
    pvc: PersistentVolumeClaimRef | None = Field(
        default=None, description="Volume holding checkpoints and the model store, mounted read-write at /store."
    )
    store_path: str = Field(
        default="/store/bentoml", max_length=4096, description="BentoML home (model store) as the trainer sees it."
    )
    checkpoint_path: str = Field(
        default="/store/checkpoints", max_length=4096, description="Folder for checkpoints; one subfolder per job."
    )


class RunPolicy(ApiModel):
    """Lifecycle of the Job, carried to batch/v1 as is."""

    backoff_limit: int = Field(default=3, ge=0, le=100, description="Pod failures retried before the job fails.")
    active_deadline_seconds: int | None = Field(default=None, ge=1, description="Wall-clock limit of the whole job.")
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete the finished Job (not the TrainingJob) after this long."
    )


class PromotionSpec(ApiModel):
    """Promote the trained model to a ModelDeployment when the validation metric passes."""

    model_deployment: DnsLabel = Field(description="ModelDeployment (same namespace) whose model is replaced.")
    metric: MetricName = Field(default=MetricName.VAL_ACCURACY, description="Metric compared.")
    threshold: float = Field(description="valAccuracy must reach at least, valLoss at most, this value.")
    must_beat_current: bool = Field(
        default=False, description="Also require a better metric than the model the deployment serves now."
    )


class TrainingJobSpec(ApiModel):
    """Desired state of a TrainingJob."""

    model: ModelSpec = Field(default_factory=ModelSpec, description="The network.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="The optimisation recipe.")
    data: DataSpec = Field(description="The dataset.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Pods, GPUs and placement.")
    output: OutputSpec = Field(description="Where the model is saved.")
    suspend: bool = Field(default=False, description="Suspend the job (pods are removed; resuming continues).")
    run_policy: RunPolicy = Field(default_factory=RunPolicy, description="Retries, deadline, clean-up.")
    promotion: PromotionSpec | None = Field(default=None, description="Promote the model when it is good enough.")


class TrainingJobPhase(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class TrainingJobConditionType(enum.StrEnum):
    CREATED = "Created"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    PROMOTED = "Promoted"
    SPEC_ACCEPTED = "SpecAccepted"


class Progress(ApiModel):
    epoch: int = Field(default=0, ge=0, description="Epochs completed.")
    total_epochs: int = Field(default=0, ge=0, description="Epochs planned.")
    step: int = Field(default=0, ge=0, description="Optimizer steps completed.")
    percent: int = Field(default=0, ge=0, le=100, description="Share of the planned work done.")
    eta_seconds: int | None = Field(default=None, ge=0, description="Estimated seconds to completion.")


class TrainingMetrics(ApiModel):
    train_loss: float | None = Field(default=None, description="Mean training loss of the last epoch.")
    val_loss: float | None = Field(default=None, description="Validation loss of the last epoch.")
    val_accuracy: float | None = Field(default=None, ge=0.0, le=1.0, description="Validation accuracy, last epoch.")
    best_val_accuracy: float | None = Field(default=None, ge=0.0, le=1.0, description="Best validation accuracy.")
    best_epoch: int | None = Field(default=None, ge=0, description="Epoch of the best model.")
    images_per_second: float | None = Field(default=None, ge=0.0, description="Training throughput, all workers.")


class CheckpointRef(ApiModel):
    uri: str = Field(description="Where the checkpoint is.")
    epoch: int = Field(ge=0, description="Epochs completed when it was written.")
    time: datetime = Field(description="When it was written.")


class ProducedModel(ApiModel):
    name: str = Field(description="Model name in the BentoML model store.")
    tag: str = Field(description="Full BentoML tag (name:version).")


class TrainingJobStatus(ApiModel):
    """Observed state of a TrainingJob."""

    phase: TrainingJobPhase | None = Field(default=None, description="Where the job is in its life.")
    conditions: list[Condition] = Field(default_factory=list, description="Standard conditions.")
    observed_generation: int | None = Field(default=None, description="The generation last reconciled.")
    start_time: datetime | None = Field(default=None, description="When training started.")
    completion_time: datetime | None = Field(default=None, description="When the job finished.")
    progress: Progress | None = Field(default=None, description="Training progress reported by the trainer.")
    metrics: TrainingMetrics | None = Field(default=None, description="Latest metrics reported by the trainer.")
    last_checkpoint: CheckpointRef | None = Field(default=None, description="Latest checkpoint written.")
    restarts: int = Field(default=0, ge=0, description="Times a failed training pod was retried.")
    model: ProducedModel | None = Field(default=None, description="The model this job produced.")
    job_name: str | None = Field(default=None, description="Name of the child batch/v1 Job.")
    message: str | None = Field(default=None, description="Last notable event, for humans.")


class TrainingJob(ApiModel):
    """A whole TrainingJob object, parsed once by the operator."""

    model_config = ApiModel.model_config | {"extra": "ignore"}
    api_version: str = API_VERSION
    kind: Literal["TrainingJob"] = "TrainingJob"
    metadata: ObjectMeta
    spec: TrainingJobSpec
    status: TrainingJobStatus = Field(default_factory=TrainingJobStatus)


def printer_columns() -> list[dict[str, Any]]:
    """`kubectl get tj` columns: the state at a glance."""
    return [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Epoch", "type": "integer", "jsonPath": ".status.progress.epoch"},
        {"name": "Of", "type": "integer", "jsonPath": ".status.progress.totalEpochs"},
        {"name": "Progress", "type": "integer", "jsonPath": ".status.progress.percent", "description": "Percent"},
        {"name": "ETA", "type": "integer", "jsonPath": ".status.progress.etaSeconds", "priority": 1},
        {"name": "Val-Acc", "type": "number", "jsonPath": ".status.metrics.valAccuracy"},
        {"name": "Best-Acc", "type": "number", "jsonPath": ".status.metrics.bestValAccuracy", "priority": 1},
        {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts"},
        {"name": "Model", "type": "string", "jsonPath": ".status.model.tag"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
