"""The light matching of benchmarks/score_camvid.py, whose figure on the held-out drive rests on it."""

import importlib.util
import os

import numpy as np

SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "score_camvid.py")


def load():
    spec = importlib.util.spec_from_file_location("score_camvid", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Images:
    n_class = 3

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], np.zeros(self.images[i].shape[:2], np.int64)


def test_light_matching_moves_each_channels_mean_and_deviation_to_the_other_splits():
    score = load()
    rng = np.random.default_rng(0)
    dark = [rng.integers(20, 90, (30, 40, 3)).astype(np.uint8) for _ in range(3)]
    bright = [rng.integers(120, 250, (30, 40, 3)).astype(np.uint8) for _ in range(2)]
    light = score.light_of(Images(dark))
    by_hand = np.mean([[im.reshape(-1, 3).mean(0), im.reshape(-1, 3).std(0)] for im in dark], axis=0)
    assert light.shape == (2, 3) and np.allclose(light, by_hand)
    matched = score.LightMatched(Images(bright), light)
    assert len(matched) == 2 and matched.n_class == 3
    for i in range(2):
        image, label = matched[i]
        assert image.dtype == np.uint8 and image.shape == bright[i].shape and label.shape == (30, 40)
        pixels = image.reshape(-1, 3).astype(np.float64)
        assert np.allclose(pixels.mean(0), light[0], atol=0.5) and np.allclose(pixels.std(0), light[1], atol=0.5)
        # the order of the pixels' values is kept: an affine map with a positive slope, per channel
        flat, original = image.reshape(-1, 3), bright[i].reshape(-1, 3)
        for c in range(3):
            assert np.all(np.diff(flat[np.argsort(original[:, c], kind="stable"), c].astype(int)) >= 0)
