"""Reference point: the paper's NeRF training step in PyTorch (what nerf-pytorch runs), timed on this machine.

    pip install torch              # not a nerfkit dependency; only this script uses it
    python benchmarks/torch_baseline.py --steps 5

Written from the NeRF paper's description, in the way nerf-pytorch implements it (eager PyTorch, float32):
positional encoding with 10 / 4 octaves, two 8x256 MLPs with a skip at layer 5 and a 128-wide view branch,
64 stratified coarse samples and 128 inverse-CDF fine samples per ray (the fine network sees all 192),
1024 random rays per step, Adam, MSE on coarse and fine. Rays come from lego's training views at
``--downscale`` (or random rays when lego is absent: the step's cost does not depend on the pixels). The
figure is the median wall-clock of ``--steps`` steps after one warm-up step, with all of torch's threads.
Writes benchmarks/results/torch_baseline_cpu.json, to compare with `throughput.py`'s `paper` figures
measured on the same machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import LEGO, environment, write_result  # noqa: E402


def build(torch):
    nn = torch.nn

    def encode(x, n):
        freqs = 2.0 ** torch.arange(n, dtype=x.dtype)
        xb = (x[..., None, :] * freqs[:, None]).flatten(-2)
        return torch.cat([x, torch.sin(xb), torch.cos(xb)], -1)

    class MLP(nn.Module):
        def __init__(self, d=8, w=256, in_x=63, in_d=27, skip=4):
            super().__init__()
            self.skip = skip
            self.layers = nn.ModuleList(
                [nn.Linear(in_x, w)] + [nn.Linear(w + (in_x if i == skip else 0), w) for i in range(1, d)])
            self.sigma = nn.Linear(w, 1)
            self.feat = nn.Linear(w, w)
            self.view = nn.Linear(w + in_d, w // 2)
            self.rgb = nn.Linear(w // 2, 3)

        def forward(self, x, d):
            h = x
            for i, layer in enumerate(self.layers):
                if i == self.skip:
                    h = torch.cat([h, x], -1)
                h = torch.relu(layer(h))
            sigma = torch.relu(self.sigma(h))[..., 0]
            h = torch.relu(self.view(torch.cat([self.feat(h), d], -1)))
            return sigma, torch.sigmoid(self.rgb(h))

    def render(net, o, d, t):
        pts = o[:, None] + d[:, None] * t[..., None]
        dirs = (d / d.norm(dim=-1, keepdim=True))[:, None].expand_as(pts)
        sigma, rgb = net(encode(pts, 10), encode(dirs, 4))
        delta = torch.cat([t[:, 1:] - t[:, :-1], torch.full_like(t[:, :1], 1e10)], -1) * d.norm(dim=-1, keepdim=True)
        alpha = 1.0 - torch.exp(-sigma * delta)
        trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-10], -1), -1)[:, :-1]
        w = alpha * trans
        return (w[..., None] * rgb).sum(1) + (1.0 - w.sum(-1, keepdim=True)), w  # white background

    def sample_pdf(bins, weights, n):
        w = weights + 1e-5
        cdf = torch.cat([torch.zeros_like(w[:, :1]), torch.cumsum(w / w.sum(-1, keepdim=True), -1)], -1)
        u = torch.rand(cdf.shape[0], n)
        idx = torch.searchsorted(cdf, u, right=True)
        lo, hi = (idx - 1).clamp(0, cdf.shape[1] - 1), idx.clamp(0, cdf.shape[1] - 1)
        c0, c1 = cdf.gather(1, lo), cdf.gather(1, hi)
        b0, b1 = bins.gather(1, lo), bins.gather(1, hi)
        denom = torch.where(c1 - c0 < 1e-5, torch.ones_like(c0), c1 - c0)
        return b0 + (u - c0) / denom * (b1 - b0)

    def step(nets, opt, o, d, target, near, far, n_coarse=64, n_fine=128):
        coarse, fine = nets
        t = torch.linspace(near, far, n_coarse + 1)[None].expand(o.shape[0], -1)
        t = t[:, :-1] + torch.rand(o.shape[0], n_coarse) * (t[:, 1:] - t[:, :-1])
        rgb_c, w = render(coarse, o, d, t)
        mids = 0.5 * (t[:, 1:] + t[:, :-1])
        t_f = sample_pdf(mids, w[:, 1:-1].detach(), n_fine).detach()
        t_all, _ = torch.sort(torch.cat([t, t_f], -1), -1)
        rgb_f, _ = render(fine, o, d, t_all)
        loss = ((rgb_c - target) ** 2).mean() + ((rgb_f - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss)

    return MLP, step


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-rays", type=int, default=1024)
    ap.add_argument("--downscale", type=int, default=4)
    ap.add_argument("--name", default="torch_baseline_cpu")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("skipped: PyTorch is not installed (pip install torch)")
        return 0
    env = environment()
    MLP, step = build(torch)
    torch.manual_seed(0)
    nets = (MLP(), MLP())
    opt = torch.optim.Adam([p for n in nets for p in n.parameters()], lr=5e-4)
    rng = np.random.default_rng(0)
    if (LEGO / "transforms_train.json").exists():
        from nerfkit import cameras
        from nerfkit.config import DataConfig
        from nerfkit.runs import load_scene

        split = load_scene(DataConfig(data=LEGO, downscale=args.downscale), splits=("train",)).splits["train"]
        o, d = (x.reshape(-1, 3) for x in cameras.all_rays(split.cameras))
        rgba = split.rgba.reshape(-1, 4)
        target_all = rgba[:, :3] + (1.0 - rgba[:, 3:])
    else:
        n = 100_000
        o, d, target_all = rng.normal(size=(n, 3)), rng.normal(size=(n, 3)), rng.uniform(size=(n, 3))
    times = []
    for i in range(args.steps + 1):
        idx = rng.integers(0, o.shape[0], args.batch_rays)
        batch = [torch.as_tensor(np.asarray(x[idx], np.float32)) for x in (o, d, target_all)]
        t0 = time.perf_counter()
        loss = step(nets, opt, *batch, near=2.0, far=6.0)
        times.append(time.perf_counter() - t0)
        print(f"step {i}: {times[-1]:.2f}s loss {loss:.4f}", flush=True)
    step_s = float(np.median(times[1:]))
    figures = {"batch_rays": args.batch_rays, "step_seconds": step_s, "rays_per_s": args.batch_rays / step_s,
               "samples_per_step": args.batch_rays * (64 + 192), "torch": torch.__version__,
               "torch_threads": torch.get_num_threads(), "steps_timed": args.steps}
    print(f"PyTorch paper step: {step_s:.2f} s -> {figures['rays_per_s']:.0f} rays/s")
    print(f"-> {write_result(args.name, figures, env=env)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
