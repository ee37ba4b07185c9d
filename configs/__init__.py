"""Named presets for ``nerfkit fit PRESET``; every field can still be overridden by a flag.

* ``demo`` — the default: fits the built-in procedural scene in a few minutes on a laptop CPU.
* ``paper`` — vanilla NeRF as published (Mildenhall et al. 2020): 8x256 MLPs, 64 coarse + 128 fine
  samples, 1024 rays per step, Adam 5e-4 -> 5e-5.
* ``cpu-fast`` — the best quality per minute found on a 2-core CPU with the same architecture family
  (smaller MLPs, fewer samples, samples confined to the scene box); see benchmarks/ for the measurements.

Without a preset, ``nerfkit fit --data X`` picks one from the data (:func:`configs.choose.choose`).
"""

from __future__ import annotations

from configs.choose import apply_overrides, capture_kind, choose, cpu_downscale
from configs.presets import PRESETS, describe

__all__ = ["PRESETS", "describe", "choose", "capture_kind", "apply_overrides", "cpu_downscale"]
