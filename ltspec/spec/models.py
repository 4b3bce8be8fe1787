"""The spec language: pydantic models of one experiment.

The package imports this module with pydantic's plugin discovery off (`ltspec.spec`, `pydantic_plugins_off`).

Every model forbids unknown keys, so a misspelt field is an error rather than a silently ignored default. A field
that names a choice (`kind`, `start`) selects one of a closed set of behaviours; nothing in a spec names code to
import or run. Checks that need several fields at once live in `ltspec.spec.checks`, where each problem can point
at the field the user should change.
"""


from typing import Annotated, Literal

from pydantic import Field

from ltspec import architectures, layouts, masks
from ltspec.datasets import DATASETS
from ltspec.recipe import OPTIMIZERS, SCHEDULES, Pair, Sgd, StepSchedule, settings_union
from ltspec.strict import Epochs, Fraction, PositiveInt, Strict, TensorKind, WeightPoint, pydantic_plugins_off
from ltspec.spec.limits import MAX_EXPERIMENT_LENGTH, MAX_NAME_LENGTH, MAX_PATH_LENGTH, MAX_SEEDS

SCHEMA_VERSION = 1

START_PATTERN = r"^(init|reinit|trained|rewind@[0-9]+|signs-reinit|signs-constant)$"
PathText = Annotated[str, Field(min_length=1, max_length=MAX_PATH_LENGTH)]


class Data(Strict):
    """Which dataset, where it lives, and how batches are drawn from it."""

    dataset: str = Field(description="Registered dataset name (a plugin may add more). `digits`, `mnist1d` and "
                         "`synthetic` need no download.",
                         json_schema_extra=lambda schema: schema.update(enum=list(DATASETS)))
    root: PathText = Field("data", description="Folder holding the dataset files, relative to the working directory.")
    download: bool = Field(False, description="Download the dataset into `root` when its files are missing.")
    batch_size: PositiveInt = Field(128, description="Training batch size (the paper: 128).")
    eval_batch_size: PositiveInt = Field(1000, description="Evaluation batch size; large is faster and exact.")
    augmentation: Literal["standard", "none"] = Field(
        "standard", description="`standard`: random crop with 4-pixel zero padding and horizontal flip (the paper); "
        "datasets that are not 32-pixel-style images always use `none`.")
    validation_split: float = Field(0.0, ge=0.0, lt=1.0,
                                    description="Fraction of the training set held out for validation.")


class Model(Strict):
    """The network, by registered architecture name."""

    arch: str = Field(description="Registered architecture, e.g. `vgg16`, `resnet20`, `mobilenetv2`, `lenet300100` "
                      "(a plugin may add more).",
                      json_schema_extra=lambda schema: schema.update(enum=architectures.names()))
    width: float = Field(1.0, gt=0.0, le=8.0, description="Channel width multiplier.")
    shortcut: Literal["A", "B"] | None = Field(
        None, description="CIFAR ResNet shortcut: `A` zero-padding identity, `B` 1x1 projection; null: the "
        "architecture's reference (A for ResNet-20..56, as in the paper; B for ResNet-18).")


Optimizer = settings_union(OPTIMIZERS)
Schedule = settings_union(SCHEDULES)


class Train(Strict):
    """The dense training recipe; arms reuse it with their own epochs and lr."""

    epochs: Epochs = Field(description="Epochs of dense training, T (the paper: 150).")
    lr: float = Field(gt=0.0, description="Initial learning rate (the paper compares 0.01 with 0.1).")
    optimizer: Optimizer = Field(Sgd())  # type: ignore[valid-type]
    schedule: Schedule = Field(StepSchedule())  # type: ignore[valid-type]
    precision: Literal["fp32", "bf16"] = Field("fp32", description="`bf16` autocast on the GPU.")
    channels_last: bool = Field(False, description="channels_last memory format (faster convolutions on a GPU).")
    compile: bool = Field(False, description="Wrap the model in torch.compile.")
    eval_every: PositiveInt = Field(1, description="Evaluate on the test split every this many epochs.")


def mask_tables() -> object:
    """The `[masks.NAME]` table: a union of the registered generators' settings, told apart by `kind`."""
    return settings_union(masks.REGISTRY)


class Arm(Strict):
    """A training run on every mask, from one starting point."""

    start: WeightPoint = Field(pattern=START_PATTERN, description="`init` (lottery), `reinit` (fresh init, another "
                               "seed), `trained` (fine-tune, lr schedule restarted), `rewind@k` (dense weights after "
                               "k epochs), `signs-reinit` (θ0's signs, the magnitudes of θ0') or `signs-constant` "
                               "(θ0's signs, one magnitude per layer).")
    epochs: Epochs | None = Field(None, description="Override T' (default: train.epochs, the equal budget).")
    lr: float | None = Field(None, gt=0.0, description="Override the initial lr (default: train.lr).")


class Measure(Strict):
    """R_p, the paper's weight-correlation indicator, over named weight pairs."""

    p: list[Fraction] = Field([0.2], min_length=1, description="Top-p fractions at which R_p is measured.")
    pairs: list[Pair[WeightPoint]] = Field(
        default=[], description="Weight pairs: `init`, `trained`, `reinit`, `rewind@k`, `X*mask` (X "
        "under the mask) or an arm's name (its trained result on the mask).")
    tensors: list[TensorKind] = Field(["conv", "linear"], min_length=1,
                                      description="Which weights count in R_p (BN and biases never do).")
    exclude: list[str] = Field(default=[], description="Layers left out of R_p, by name or pattern.")


class Interpolation(Strict):
    """Linear mode connectivity (Frankle et al., ICML 2020): the test error along the straight path between two
    weight points, and its barrier."""

    pairs: list[Pair[str]] = Field(
        default=[], description="Weight pairs to connect, named as in [measure]: `init`, `trained`, `reinit`, "
        "`rewind@k`, `X*mask` (X under the mask) or an arm's name (its trained result on the mask).")
    points: int = Field(11, ge=2, le=101, description="Evenly spaced α from 0 to 1, both ends included.")
    masks: list[str] | None = Field(None, description="The [masks] tables on whose masks the pairs with a sparse "
                                    "side are interpolated; null: every table.")
    batch_norm: Literal["recompute", "interpolate"] = Field(
        "recompute", description="The batch-norm statistics of an interpolated network: `recompute` them with a "
        "pass over the training data (its own statistics), or `interpolate` the two ends' running statistics.")


class Instability(Strict):
    """Instability analysis (Frankle et al., ICML 2020): copies of an arm, trained from its start on its mask under
    other SGD noise (batch order and augmentation), and the error barrier between the arm and each copy."""

    arms: list[str] = Field(default=[], description="The arms to copy, by name; each is copied on every mask of "
                            "the tables `masks` names.")
    copies: int = Field(1, ge=1, le=10, description="Copies of each arm besides the arm itself, each with a data "
                        "order of its own; the barrier is measured between the arm and every copy.")
    masks: list[str] | None = Field(None, description="The [masks] tables on whose masks the arms are copied; "
                                    "null: every table.")


class MaskOverlap(Strict):
    """Mask similarity: the Jaccard overlap of kept sets and the Hamming distance, from stored masks and weights."""

    compare: list[Literal["generators", "seeds", "rounds"]] = Field(
        default=[], description="`generators`: every two [masks] tables at each sparsity they share, per trunk; "
        "`seeds`: every two seeds' masks of each table; `rounds`: the masks an IMP table (from θT and each "
        "retrained ticket) or a gradual table (after each epoch) passes through at its target, each with the next "
        "(the early-bird signal of You et al. 2020).")


REPORT_LAYOUTS = tuple(layouts.REGISTRY)


class Report(Strict):
    layouts: list[Literal[REPORT_LAYOUTS]] = Field(list(REPORT_LAYOUTS),  # type: ignore[valid-type]
                                                   description="Which of the paper's tables and figures to render.")


class Tracking(Strict):
    uri: PathText = Field("sqlite:///mlflow.db", description="MLflow tracking URI; the default is the sqlite file "
                          "that a plain `mlflow ui` in the same folder opens.")
    experiment: str | None = Field(None, min_length=1, max_length=MAX_EXPERIMENT_LENGTH,
                                   description="MLflow experiment name (default: the spec's name).")
    log_weights: bool = Field(False, description="Log each train stage's final weights as an artifact of its "
                              "MLflow run (they are always in the store, whose path each run's tags name).")


class Storage(Strict):
    root: PathText = Field("results", description="Artifact store folder (weights, masks, checkpoints).")
    checkpoint_every: PositiveInt = Field(1, description="Epochs between resume checkpoints.")
    checkpoint_seconds: float = Field(300.0, ge=0.0, le=86400.0, description="At most one resume checkpoint per "
                                      "this many seconds (0: every `checkpoint_every` epochs); an interrupted run "
                                      "always keeps its last finished epoch.")


class Resources(Strict):
    """What a stage needs from the machine or a cluster's scheduler (Ray, Slurm); no part of a stage's key."""

    gpu_share: float | None = Field(None, gt=0.0, le=8.0, description="GPUs per stage, on the local runner, Ray and "
                                    "Slurm (fractional shares pack small nets on one GPU); null: 1 for large nets, "
                                    "0.25 for small ones.")
    cpus: float = Field(1.0, gt=0.0, description="CPUs per stage on Ray and Slurm, and the torch threads of every "
                        "stage on every runner.")
    memory: str | None = Field(None, pattern=r"^[1-9][0-9]*[KMGT]?$", description="Memory per stage on Slurm, as "
                               "sbatch's --mem takes it (`4G`, `500M`; a plain number is megabytes); null: the "
                               "site's default.")
    time_limit: str | None = Field(None, pattern=r"^([0-9]+-)?[0-9]+(:[0-9]{1,2}){0,2}$", description="Time limit of "
                                   "each Slurm job, as sbatch's --time takes it (`4:00:00`, `1-12`, `90` minutes); a "
                                   "job near its limit requeues itself and resumes; null: the partition's default.")
    deterministic: bool = Field(False, description="On a GPU, torch's deterministic algorithms, so that a stage's "
                                "results are bit-identical from run to run and whichever GPU slot ran it (slower "
                                "kernels); cuDNN's benchmark mode is off either way.")


class Spec(Strict):
    """One experiment: a dense recipe, mask generators, arms trained on every mask, and what to measure."""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="The spec format version.")
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                      description="The experiment's name: letters, digits, `.`, `_` and `-`, starting with a letter "
                      "or digit; it names the report folder and the default MLflow experiment.")
    description: str = Field("", description="A line saying what the experiment is for.")
    seeds: list[Annotated[int, Field(ge=0)]] = Field([0], min_length=1, max_length=MAX_SEEDS,
                                                     json_schema_extra={"uniqueItems": True},
                                                     description="Seeds, each once; every one is a dense trunk of "
                                                     "its own.")
    data: Data
    model: Model
    train: Train
    masks: dict[str, mask_tables()] = Field(default={})  # type: ignore[valid-type]
    arms: dict[str, Arm] = Field(default={})
    measure: Measure = Field(Measure())
    interpolation: Interpolation = Field(Interpolation())
    instability: Instability = Field(Instability())
    mask_overlap: MaskOverlap = Field(MaskOverlap())
    sweep: dict[str, list[bool | int | float | str]] = Field(
        default={}, description="Dotted field paths to lists of values, expanded as a product.")
    report: Report = Field(Report())
    tracking: Tracking = Field(Tracking())
    storage: Storage = Field(Storage())
    resources: Resources = Field(Resources())


def rebuild() -> None:
    """Rebuild `Spec` after plugins registered more mask generators, so that their tables validate (and show in
    the JSON schema)."""
    Spec.model_fields["masks"].annotation = dict[str, mask_tables()]  # type: ignore[valid-type]
    with pydantic_plugins_off():
        Spec.model_rebuild(force=True)

