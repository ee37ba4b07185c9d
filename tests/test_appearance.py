"""Per-image appearance embeddings (NeRF-W): photos with different exposures are explained per image."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nerfkit import cameras as cam
from nerfkit import renderer, runs
from nerfkit.config import DataConfig, FieldConfig, FitConfig, ModelConfig, TrainConfig
from nerfkit.fit import fit
from nerfkit.types import Rays

EXPOSURE = (0.45, 1.0)  # even training images are darker


@pytest.fixture(scope="module")
def exposure_scene(tmp_path_factory) -> tuple[Path, object]:
    from nerfkit.data.demo import make_demo_scene, write_blender

    scene = make_demo_scene(width=16, height=16, n_train=8, n_val=2, n_test=2)
    train = scene.splits["train"]
    f = np.where(np.arange(len(train)) % 2 == 0, *EXPOSURE).astype(np.float32)
    rgba = train.rgba.copy()
    rgba[..., :3] *= f[:, None, None, None]  # premultiplied: scales the colour, not the coverage
    scene = dataclasses.replace(scene, splits={**scene.splits, "train": dataclasses.replace(train, rgba=rgba)})
    root = tmp_path_factory.mktemp("exposure") / "scene"
    write_blender(scene, root)
    return root, scene


def test_appearance_codes_learn_the_exposure_of_each_photo(tmp_path, exposure_scene):
    root, scene = exposure_scene
    field = FieldConfig(depth=2, width=32, view_width=16)
    model_cfg = ModelConfig(coarse=field, fine=field, num_coarse=8, num_fine=8, appearance_dim=4)
    fit(FitConfig(out=tmp_path / "run", data=DataConfig(data=root), model=model_cfg, preset="test",
                  train=TrainConfig(steps=150, batch_rays=256, lr_init=1e-2, lr_final=1e-3, log_every=50,
                                    val_every=0, val_views=0, checkpoint_every=1000)))
    run = runs.load_run(tmp_path / "run")
    meta = run.meta
    model = nnx.merge(run.graphdef, run.params)
    assert model.appearance.embedding[...].shape == (8, 4)
    rays = cam.image_rays(meta.cameras["train"], 0, np)
    o, d = jnp.asarray(rays.origins.reshape(-1, 3)), jnp.asarray(rays.directions.reshape(-1, 3))

    def render(ids):
        r = Rays(o, d, d, image_ids=ids)
        return np.asarray(run.sampler.render(model, r, run.sampler_state, jnp.ones(3)).rgb)

    dark, bright = render(jnp.zeros(o.shape[0], jnp.int32)), render(jnp.ones(o.shape[0], jnp.int32))
    obj = scene.splits["train"].rgba[0].reshape(-1, 4)[:, 3] > 0.9
    ratio = dark[obj].mean() / bright[obj].mean()
    # The same rays rendered with a dark photo's code come out darker (truth 0.45; learning after 150 steps).
    assert ratio < 0.9, ratio
    # Novel views use the mean code: between the two.
    fn = renderer.make_render_fn(run.graphdef, run.sampler, np.ones(3, np.float32))
    mean = renderer.render_rays_chunked(fn, run.params, run.sampler_state, rays.origins, rays.directions, 64)["rgb"]
    m = mean.reshape(-1, 3)[obj].mean()
    assert dark[obj].mean() < m < bright[obj].mean()


def test_appearance_render_index_is_checked():
    from nerfkit.errors import InputError
    from nerfkit.model import NeRFModel

    with pytest.raises(InputError, match="appearance-render"):
        NeRFModel(ModelConfig(appearance_dim=4, appearance_render=9), rngs=nnx.Rngs(0), num_images=3)
