"""Typed configuration: plain dataclasses, turned into command-line flags by tyro.

The docstring under each field is its ``--help`` text. Presets live in ``configs/``; a run directory keeps
the resolved config as ``config.json`` so ``render`` and ``evaluate`` rebuild exactly what ``fit`` trained.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Optional

import tyro

from nerfkit.errors import InputError
from nerfkit.flags import FINITE, FRACTION, NON_NEGATIVE, POSITIVE, Rule, at_least


@dataclasses.dataclass(frozen=True)
class FieldConfig:
    """The coordinate MLP (NeRF section 4 and fig. 7)."""

    encoding: Literal["frequency", "hash", "fourier"] = "frequency"
    """Position encoding: NeRF's sinusoidal positional encoding (of world coordinates), a multiresolution hash
    grid (Instant-NGP), or Gaussian random Fourier features (Tancik et al. 2020). hash and fourier first map
    the scene box to [0, 1]^3."""
    depth: int = 8
    """Layers in the trunk that maps encoded positions to features."""
    width: int = 256
    """Units per trunk layer."""
    skips: tuple[int, ...] = (4,)
    """Trunk layers whose input is concatenated with the encoded position again."""
    pos_freqs: int = 10
    """Octaves of the positional encoding of 3D points."""
    dir_freqs: int = 4
    """Octaves of the positional encoding of view directions (0 with use_viewdirs=False disables it)."""
    use_viewdirs: bool = True
    """Condition colour on the view direction (the view-dependent branch)."""
    view_width: int = 128
    """Units of the view-dependent colour branch."""
    activation: Literal["relu", "softplus", "silu", "gelu", "sine"] = "relu"
    """Hidden-layer activation. sine: SIREN (Sitzmann et al. 2020), sin(siren_w0 * (W h + b)) with SIREN's
    initialisation (use it with pos_freqs=0 for raw coordinates, as in the paper)."""
    density_activation: Literal["relu", "softplus", "exp"] = "relu"
    """Maps the raw density output to sigma >= 0."""
    density_bias: float = 0.0
    """Added to the raw density before its activation (negative starts the field emptier)."""
    hash_levels: int = 16
    """Hash grid: resolution levels."""
    hash_features: int = 2
    """Hash grid: features per level."""
    hash_log2_size: int = 17
    """Hash grid: log2 of the table rows per level."""
    hash_min_res: int = 16
    """Hash grid: coarsest resolution (cells per side of the scene box)."""
    hash_max_res: int = 512
    """Hash grid: finest resolution."""
    fourier_features: int = 128
    """Fourier features: m, the number of random frequencies (the encoding has 2 m dims: cos and sin)."""
    fourier_scale: float = 4.0
    """Fourier features: sigma, the standard deviation of the frequencies, in cycles per side of the scene box
    (on lego, 2-5 learn as fast as PE; 8 and above stall at the start: in 3D few frequencies are low)."""
    fourier_seed: int = 0
    """Fourier features: seed of the fixed frequency matrix B (not trained; rebuilt from this seed on load)."""
    siren_w0: float = 30.0
    """SIREN (activation=sine): the frequency factor w0 of every sine layer (30 in the paper)."""

    RULES: ClassVar[dict[str, Rule]] = dict(
        depth=at_least(1), width=at_least(1), skips=NON_NEGATIVE, pos_freqs=NON_NEGATIVE, dir_freqs=NON_NEGATIVE,
        view_width=at_least(1), density_bias=FINITE, hash_levels=at_least(1), hash_features=at_least(1),
        hash_log2_size=Rule(low=1, high=30), hash_min_res=at_least(1), hash_max_res=at_least(1),
        fourier_features=at_least(1), fourier_scale=POSITIVE, fourier_seed=NON_NEGATIVE, siren_w0=POSITIVE)
    """The domain of each numeric field (:mod:`nerfkit.flags`), checked before a fit starts."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Networks and ray sampling."""

    coarse: FieldConfig = dataclasses.field(default_factory=FieldConfig)
    """The radiance field: the coarse network of the hierarchical sampler (evaluated at the stratified
    samples), the only one of the occupancy and proposal samplers."""
    fine: FieldConfig = dataclasses.field(default_factory=FieldConfig)
    """The fine network (evaluated at stratified + importance samples; unused when num_fine = 0)."""
    num_coarse: int = 64
    """Stratified samples per ray for the coarse pass."""
    num_fine: int = 128
    """Importance samples per ray for the fine pass (0: coarse network only). Proposal sampler: the radiance
    field's samples per ray, drawn from the last proposal's weights."""
    sampler: Literal["hierarchical", "occupancy", "proposal"] = "hierarchical"
    """hierarchical: coarse + fine networks (the paper). occupancy: one network (``coarse``) sampled only in
    cells an occupancy grid marks occupied (empty-space skipping; num_fine is ignored). proposal: small
    density-only proposal fields choose where the one radiance field (``coarse``) is sampled (mip-NeRF 360,
    nerfacto), trained with the interlevel loss; for unbounded real captures."""
    proposal: FieldConfig = dataclasses.field(default_factory=lambda: FieldConfig(
        encoding="hash", depth=1, width=16, skips=(), use_viewdirs=False, density_activation="exp",
        hash_levels=5, hash_features=2, hash_log2_size=17, hash_min_res=16, hash_max_res=128))
    """Proposal sampler: the density-only proposal fields (one per entry of proposal_samples)."""
    proposal_samples: tuple[int, ...] = (64,)
    """Proposal sampler: samples per ray of each proposal pass, in order (one small field per pass)."""
    render_proposal_samples: tuple[int, ...] = ()
    """Proposal sampler: proposal_samples when rendering (render, evaluate; one entry per pass; empty: as in
    training). Rendering evaluates every sample of every ray, so its time follows these counts."""
    render_num_fine: int = 0
    """Proposal sampler: num_fine when rendering (0: as in training)."""
    interlevel_loss: float = 1.0
    """Proposal sampler: weight of the interlevel loss (mip-NeRF 360 eq. 13) that teaches each proposal field
    to bound the radiance field's weights."""
    distortion_loss: float = 0.0
    """Proposal sampler: weight of mip-NeRF 360's distortion loss (eq. 15) on the radiance field's weights
    (compact surfaces, no floaters; 0: off)."""
    grid_resolution: int = 64
    """Occupancy grid cells per axis over the scene box."""
    march_steps: int = 256
    """Occupancy sampler: marching steps across the scene box's diagonal."""
    max_samples: int = 48
    """Occupancy sampler: field evaluations per ray (occupied candidates are compacted into these)."""
    grid_update_every: int = 16
    """Steps between occupancy-grid updates from the field's density."""
    grid_decay: float = 0.95
    """Occupancy grid: exponential decay of the running density per update."""
    grid_threshold: float = 0.01
    """Occupancy grid: a cell is occupied when one marching step through it is more opaque than this."""
    early_stop_eps: float = 1e-4
    """Occupancy sampler, rendering: stop marching a ray once its transmittance is below this (early ray
    termination; its field evaluations go to the rays still marching). 0: composite every occupied sample."""
    clip_to_aabb: bool = False
    """Sample only where rays cross the scene's bounding box instead of all of [near, far]."""
    contraction: bool = False
    """Unbounded scenes (mip-NeRF 360): points farther than contraction_radius from the origin are squeezed
    into a ball of twice that radius, x -> (2 - 1/|x|) x/|x| in units of the radius, before the field sees them."""
    contraction_radius: float = 1.0
    """Radius of the region left as it is by the contraction (the foreground)."""
    contraction_norm: Literal["l2", "inf"] = "l2"
    """Norm of the contraction: l2 squeezes space into a ball of radius 2 (mip-NeRF 360); inf into the cube
    [-2, 2]^3 (nerfstudio's default), which fills a hash grid's box."""
    contraction_far: float = 1000.0
    """Proposal sampler with contraction: rays are sampled out to this distance (all of the contracted space
    up to its boundary), whatever the scene's far."""
    lindisp: bool = False
    """Hierarchical sampler: space coarse samples evenly in inverse depth (for distant backgrounds)."""
    appearance_dim: int = 0
    """Per-training-image appearance embeddings of this width (NeRF-W), fed to the colour branch, so
    exposure / white balance / lighting that changes between photos is explained per image (0: off)."""
    appearance_render: int = -1
    """Appearance used for novel views: -1 the mean of the training images' embeddings, i >= 0 image i's."""
    pose_refine: bool = False
    """Learn a correction of each training camera's pose with the field (6 numbers per image: a rotation
    vector and a translation, applied as exp(delta) @ c2w to its rays; see nerfkit/poses.py), at the learning
    rate --train.pose-lr. Renders and evaluation use the cameras as given."""
    mip: bool = False
    """mip-NeRF: encode each sample's conical frustum (pixel footprint) with the integrated positional
    encoding instead of a point, so the field is pre-filtered for rendering at other scales (hierarchical
    sampler, frequency encoding)."""
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    """Matmul dtype of the MLPs (accumulation and the integrator stay float32)."""

    RULES: ClassVar[dict[str, Rule]] = dict(
        num_coarse=at_least(1), num_fine=NON_NEGATIVE, proposal_samples=at_least(1), render_proposal_samples=at_least(1),
        render_num_fine=NON_NEGATIVE, interlevel_loss=NON_NEGATIVE,
        distortion_loss=NON_NEGATIVE, grid_resolution=at_least(1), march_steps=at_least(1), max_samples=at_least(1),
        grid_update_every=at_least(1), grid_decay=Rule(low=0, high=1, low_open=True), grid_threshold=FRACTION,
        early_stop_eps=Rule(low=0, high=1, high_open=True), contraction_radius=POSITIVE, contraction_far=POSITIVE,
        appearance_dim=NON_NEGATIVE, appearance_render=at_least(-1))
    """The domain of each numeric field (:mod:`nerfkit.flags`)."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are prepared."""

    data: Annotated[Optional[Path], tyro.conf.arg(aliases=("--data",))] = None
    """Scene directory (Blender layout with transforms_*.json). None: the built-in procedural demo scene."""
    downscale: Annotated[int, tyro.conf.arg(aliases=("--downscale",))] = 1
    """Integer factor to shrink images by (area filtering)."""
    background: Annotated[Literal["white", "black", "random"], tyro.conf.arg(aliases=("--background",))] = "white"
    """Background composited behind transparent pixels in training (random: a new colour per ray)."""

    RULES: ClassVar[dict[str, Rule]] = dict(downscale=at_least(1))
    """The domain of each numeric field (:mod:`nerfkit.flags`)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping."""

    steps: Annotated[int, tyro.conf.arg(aliases=("--steps",))] = 200_000
    """Stop after this many optimisation steps."""
    time_budget: Annotated[Optional[float], tyro.conf.arg(aliases=("--time-budget",))] = None
    """Stop after this many seconds of wall-clock for the whole command (start-up included)."""
    batch_rays: Annotated[int, tyro.conf.arg(aliases=("--batch-rays",))] = 1024
    """Rays per step, drawn at random across all training images."""
    sample_budget: int = 65536
    """Occupancy sampler: field evaluations per step, shared by the batch's rays (packed samples)."""
    early_stop_prepass: int = 0
    """Occupancy sampler: train with early ray termination. Each batch's samples are first packed into this
    many slots and a gradient-free density pass finds where each ray's transmittance falls below
    model.early_stop_eps; only the samples in front of that point are trained on (packed into sample_budget).
    0: off (train on every sample)."""
    lr_init: float = 5e-4
    """Adam learning rate at the start (decays exponentially to lr_final)."""
    lr_final: float = 5e-5
    """Learning rate at the end of training (by steps or by time budget, whichever ends first)."""
    pose_lr: float = 1e-3
    """Learning rate of the pose corrections (--model.pose-refine) at the start; it follows lr's warm-up and
    decay (it is lr times pose_lr / lr_init)."""
    lr_warmup_steps: int = 0
    """Linear warm-up of the learning rate over this many steps."""
    adam_eps: float = 1e-7
    """Adam's epsilon."""
    grad_clip: float = 0.0
    """Clip the global gradient norm to this value (0: off)."""
    seed: Annotated[int, tyro.conf.arg(aliases=("--seed",))] = 0
    """Random seed for initialisation, ray batches and sample jitter."""
    log_every: int = 50
    """Steps between progress updates and metrics.jsonl lines (the only host syncs in the loop)."""
    val_every: int = 5000
    """Steps between validation renders (0: only at the end)."""
    val_views: int = 2
    """Validation views rendered each time."""
    val_split: Literal["val", "test"] = "val"
    """Split the validation views come from (test when the scene has no val split)."""
    val_every_seconds: float = 0.0
    """Also validate every this many seconds of training (0: off). For time-to-quality curves: these renders
    are logged with train_time (wall-clock minus validation and checkpoints) and not charged to the time budget."""
    checkpoint_every: int = 2000
    """Steps between checkpoints (one is always written at the end)."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk."""
    render_chunk: int = 4096
    """Rays per compiled rendering call (bounds memory when rendering images)."""
    multiscale: int = 1
    """Train on an image pyramid of this many levels (1, 1/2, 1/4, ... of the training images, area-filtered;
    each level drawn equally often): mip-NeRF's multi-scale training. 1: the images as they are."""
    devices: int = 0
    """Devices the ray batch is split across (data parallel; 0: all local devices, or all processes' with
    --train.distributed). batch_rays must be divisible by it."""
    distributed: bool = False
    """Multi-host: call jax.distributed.initialize() first (coordinator from the environment, e.g. SLURM)."""

    RULES: ClassVar[dict[str, Rule]] = dict(
        steps=at_least(1), time_budget=POSITIVE, batch_rays=at_least(1), sample_budget=at_least(1),
        early_stop_prepass=NON_NEGATIVE, lr_init=POSITIVE, lr_final=POSITIVE, pose_lr=NON_NEGATIVE,
        lr_warmup_steps=NON_NEGATIVE, adam_eps=POSITIVE, grad_clip=NON_NEGATIVE, seed=NON_NEGATIVE,
        log_every=at_least(1), val_every=NON_NEGATIVE, val_views=NON_NEGATIVE, val_every_seconds=NON_NEGATIVE,
        checkpoint_every=NON_NEGATIVE, keep_checkpoints=at_least(1), render_chunk=at_least(1), multiscale=at_least(1),
        devices=NON_NEGATIVE)
    """The domain of each numeric field (:mod:`nerfkit.flags`)."""


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Fit a radiance field to posed images."""

    out: Path = Path("runs/demo")
    """Run directory: config, checkpoints, metrics.jsonl, validation images."""
    resume: bool = False
    """Continue from the latest checkpoint in --out instead of starting over."""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    preset: tyro.conf.Suppress[str] = "demo"
    """Name of the preset this config started from (recorded in config.json; set by the CLI)."""
    viewer: bool = False
    """Show the field in the browser while it trains (viser; `nerfkit view` after the fit)."""
    viewer_host: str = "127.0.0.1"
    """--viewer: address to listen on."""
    viewer_port: int = 7007
    """--viewer: port to listen on."""

    RULES: ClassVar[dict[str, Rule]] = dict(viewer_port=Rule(low=1, high=65535))


# --------------------------------------------------------------------------------------------------------
# JSON round trip of the resolved config.


def to_dict(cfg) -> dict:
    """A JSON-ready dict of a config dataclass (paths become strings, tuples lists)."""

    def conv(x):
        if dataclasses.is_dataclass(x):
            return {f.name: conv(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, Path):
            return str(x)
        if isinstance(x, (tuple, list)):
            return [conv(v) for v in x]
        return x

    return conv(cfg)


def from_dict(cls, d: dict, where: str = "config"):
    """Rebuild a config dataclass from :func:`to_dict` output; unknown or ill-typed keys raise InputError."""
    if not isinstance(d, dict):
        raise InputError(f"expected an object, got {type(d).__name__}", field=where)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise InputError(f"unknown key(s) {sorted(unknown)}", field=where)
    kwargs = {}
    for name, value in d.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
    return cls(**kwargs)


def _coerce(tp, value, where):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if tp is Path:
        return Path(value)
    if origin is tuple:
        return tuple(_coerce(args[0], v, where) for v in value)
    if origin is Literal:
        if value not in args:
            raise InputError(f"{value!r} is not one of {list(args)}", field=where)
        return value
    if tp is float and isinstance(value, (int, float)):
        return float(value)
    if tp in (int, bool, str) and not isinstance(value, tp):
        raise InputError(f"expected {tp.__name__}, got {value!r}", field=where)
    return value


def save_config(cfg: FitConfig, path: Path) -> None:
    path.write_text(json.dumps(to_dict(cfg), indent=2) + "\n")


def load_config(path: Path) -> FitConfig:
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("no config.json: not a nerfkit run directory", path=path.parent) from None
    except json.JSONDecodeError as e:
        raise InputError(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}", path=path) from None
    try:
        return from_dict(FitConfig, d)
    except InputError as e:
        raise InputError(str(e), path=path) from None
