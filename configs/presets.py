"""Preset definitions (plain config objects; see ``configs/__init__.py``)."""

from __future__ import annotations

import pathlib

from nerfkit.config import DataConfig, FieldConfig, FitConfig, ModelConfig, TrainConfig

_HASH = FieldConfig(encoding="hash", depth=1, width=64, skips=(), view_width=64, dir_freqs=4,
                    density_activation="exp", hash_levels=12, hash_features=2, hash_log2_size=16,
                    hash_min_res=16, hash_max_res=512)
_HASH_SMALL = FieldConfig(encoding="hash", depth=1, width=64, skips=(), view_width=64, dir_freqs=4,
                          density_activation="exp", hash_levels=8, hash_features=2, hash_log2_size=16,
                          hash_min_res=16, hash_max_res=256)
_HASH_REAL = FieldConfig(encoding="hash", depth=1, width=64, skips=(), view_width=64, dir_freqs=4,
                         density_activation="exp", hash_levels=8, hash_features=4, hash_log2_size=17,
                         hash_min_res=16, hash_max_res=1024)
_SMALL = FieldConfig(depth=4, width=128, skips=(), view_width=64, density_activation="softplus", density_bias=-1.0)
_LLFF = FieldConfig(depth=4, width=64, skips=(), view_width=32, density_activation="softplus", density_bias=-1.0)

PRESETS: dict[str, tuple[str, FitConfig]] = {
    "paper": (
        "vanilla NeRF as in the paper: 8x256 MLPs, 64 coarse + 128 fine samples, 1024 rays/step",
        FitConfig(preset="paper", out=pathlib.Path("runs/paper")),
    ),
    "paper-grid": (
        "the paper's 8x256 PE-MLP and 1024 rays/step, sampled through an occupancy grid (nerfacc's recipe)",
        FitConfig(
            preset="paper-grid",
            out=pathlib.Path("runs/paper-grid"),
            # One network instead of coarse + fine: samples come from the grid, packed into a budget of 32
            # field evaluations per ray on average (about 21 are used on lego once the grid has pruned), against
            # the paper's 64 + 192 per ray.
            model=ModelConfig(coarse=FieldConfig(), sampler="occupancy", max_samples=48, march_steps=256,
                              grid_resolution=64, grid_update_every=16),
            train=TrainConfig(batch_rays=1024, sample_budget=32768, lr_init=5e-4, lr_final=5e-5, lr_warmup_steps=50,
                              val_every=0, val_views=1, checkpoint_every=500, log_every=20),
        ),
    ),
    "cpu-fast": (
        "best quality per minute on a 2-core CPU with the PE-MLP: 4x128 MLP, occupancy-grid sampling",
        FitConfig(
            preset="cpu-fast",
            out=pathlib.Path("runs/cpu-fast"),
            # Measured on lego 100x100, 600 s: batch 2048 / lr 2e-3 -> 1e-4 reached 21.8 dB (1080 steps);
            # batch 1024 / lr 3e-3 -> 3e-4 / grid update every 32 steps reached 27.2 dB (3360 steps).
            model=ModelConfig(coarse=_SMALL, sampler="occupancy", max_samples=48, grid_resolution=64,
                              grid_update_every=32),
            train=TrainConfig(batch_rays=1024, sample_budget=16384, lr_init=3e-3, lr_final=3e-4, lr_warmup_steps=100,
                              val_every=0, val_views=1, checkpoint_every=500, log_every=20),
        ),
    ),
    "hash-fast": (
        "hash-grid encoding + 64-wide MLP, occupancy grid: the fastest quality on any device",
        FitConfig(
            preset="hash-fast",
            out=pathlib.Path("runs/hash-fast"),
            # Small steps: on lego 100x100 (2-core CPU, PSNR on the first 25 test views) the same number of field
            # evaluations trained as 150 x 4096 rays gave 19.9 dB, as 600 x 1024 25.0, 1200 x 512 26.5 and
            # 2400 x 256 27.3; the step rate grows about as fast as the batch shrinks. A 40 s budget then gave
            # 13.7 dB (one val view) at 4096 rays and 24.9 at 256, and 600 s gives 32.4 dB (25091 steps; 31.1 at
            # 4096 rays). Grid updates every 128 steps (64: 24.9 dB at 40 s, 128: 25.3, 256: 23.9).
            model=ModelConfig(coarse=_HASH, sampler="occupancy", max_samples=64, grid_resolution=64,
                              grid_update_every=128),
            train=TrainConfig(batch_rays=256, sample_budget=4096, lr_init=1e-2, lr_final=3e-4, adam_eps=1e-15,
                              lr_warmup_steps=20, val_every=0, val_views=1, checkpoint_every=500, log_every=20),
        ),
    ),
    "mipnerf": (
        "mip-NeRF on a CPU: 4x128 MLPs with the integrated positional encoding of pixel cones, 32 + 32 samples",
        FitConfig(
            preset="mipnerf",
            out=pathlib.Path("runs/mipnerf"),
            # The PE-vs-IPE comparison of benchmarks/multiscale.py uses exactly this model and schedule.
            model=ModelConfig(coarse=_SMALL, fine=_SMALL, num_coarse=32, num_fine=32, sampler="hierarchical",
                              mip=True, clip_to_aabb=True),
            train=TrainConfig(batch_rays=1024, lr_init=3e-3, lr_final=3e-4, lr_warmup_steps=100, val_every=0,
                              val_views=1, checkpoint_every=500, log_every=50),
        ),
    ),
    "llff": (
        "LLFF forward-facing captures on a CPU: NDC rays, 4x64 PE-MLPs, 16 coarse + 16 fine samples, images_8",
        FitConfig(
            preset="llff",
            out=pathlib.Path("runs/llff"),
            # nerf-pytorch's LLFF config in miniature: hierarchical sampling over t in [0, 1] of the NDC rays
            # (the loader sets near 0 / far 1), downscale 8 (504x378 for the NeRF captures), black background
            # (the images have no alpha, so it never shows). Measured on the procedural capture of
            # tests/test_llff.py (17 train views at 32x24, 2-core CPU), held-out PSNR: 128 rays x 1000 steps
            # 29.3 dB, against 256 x 500 26.0, 256 x 800 29.0, 512 x 500 26.9 and 1024 x 400 26.5 dB (more
            # rays in total, and slower); lr 1e-2 beat 5e-3 (26.9 vs 25.0 dB at 128 x 700).
            data=DataConfig(data=None, downscale=8, background="black"),
            model=ModelConfig(coarse=_LLFF, fine=_LLFF, num_coarse=16, num_fine=16, sampler="hierarchical"),
            train=TrainConfig(batch_rays=128, lr_init=1e-2, lr_final=1e-3, lr_warmup_steps=50, val_every=0,
                              val_views=1, checkpoint_every=2000, log_every=50),
        ),
    ),
    "real-capture": (
        "real photographs (360-degree or forward-facing): hash grid over a contracted unbounded space, sampled "
        "by a proposal field, per-image appearance codes",
        FitConfig(
            preset="real-capture",
            out=pathlib.Path("runs/real-capture"),
            # nerfacto's recipe (hash field over the L-inf contraction, proposal sampling with the interlevel
            # loss, distortion loss, appearance embeddings) sized for a CPU; see benchmarks/real_captures.py.
            data=DataConfig(data=None, background="random"),
            # Rendering with 32 + 16 samples instead of 48 + 24 is 1.5x faster for -0.12 dB on bird's held-out
            # views (benchmarks/results/render_samples_bird.json).
            model=ModelConfig(coarse=_HASH_REAL, sampler="proposal", proposal_samples=(48,), num_fine=24,
                              render_proposal_samples=(32,), render_num_fine=16, contraction=True, contraction_norm="inf", appearance_dim=16, distortion_loss=0.002),
            # Chunks of 1024 rays render ~25% faster than 4096 on a 2-core CPU (the samples' intermediates stay in
            # cache).
            train=TrainConfig(batch_rays=1024, lr_init=1e-2, lr_final=1e-3, adam_eps=1e-15, lr_warmup_steps=20,
                              val_every=0, val_views=1, checkpoint_every=500, log_every=20, render_chunk=1024),
        ),
    ),
    "demo": (
        "the built-in procedural scene in a few minutes on a CPU (the default)",
        FitConfig(
            preset="demo",
            data=DataConfig(data=None),
            model=ModelConfig(coarse=_HASH_SMALL, sampler="occupancy", max_samples=48, grid_resolution=64),
            train=TrainConfig(steps=5000, time_budget=170, batch_rays=4096, sample_budget=65536, lr_init=1e-2,
                              lr_final=1e-3, adam_eps=1e-15, lr_warmup_steps=20, val_every=0, val_views=2,
                              checkpoint_every=200, log_every=20),
        ),
    ),
}


def describe() -> str:
    return "\n".join(f"  {name:10s} {desc}" for name, (desc, _) in PRESETS.items())
