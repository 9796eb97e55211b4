"""The light matching and the ensemble of benchmarks/score_camvid.py, whose figures on the held-out drive rest on
them."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def score(load_benchmark):
    return load_benchmark("score_camvid")


class Images:
    n_class = 3

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], np.zeros(self.images[i].shape[:2], np.int64)


def test_light_is_matched_to_the_training_images_of_the_drive_scored(score):
    drives = {"0001TP": 62, "0006R0": 101, "0016E5": 204}
    assert score.training_split("0006R0", drives) == "train-without-0006R0"
    assert score.training_split("0001TP", drives) == "train-without-0001TP"
    assert score.training_split("val", drives) == "train" and score.training_split("Seq05VD", drives) == "train"


def test_light_matching_moves_each_channels_mean_and_deviation_to_the_other_splits(score):
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


def test_the_ensemble_averages_each_nets_log_probabilities(score, tmp_path):
    import minifcn as mf
    from minifcn.checkpoint import save_checkpoint
    from minifcn.metrics import confusion_matrix
    from minifcn.models import FCN8s
    from minifcn.preprocessing import TORCHVISION

    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (64, 80, 3)).astype(np.uint8) for _ in range(2)]
    paths, nets = [], []
    for seed in (0, 1):
        mf.manual_seed(seed)
        net = FCN8s(3, "tiny-bn", pad=21, fc6_kernel=4)
        for p in net.parameters():  # scores that differ from net to net, as trained nets' do
            p.data = (p.data + rng.standard_normal(p.data.shape).astype(np.float32) * 0.1).astype(np.float32)
        meta = dict(model="fcn8s", backbone="tiny-bn", n_class=3, pad=21, fc6_kernel=4, preprocessing="torchvision")
        save_checkpoint(str(tmp_path / f"{seed}.npz"), net, meta=meta)
        paths.append(str(tmp_path / f"{seed}.npz"))
        nets.append(net.eval())
    labels = [rng.integers(0, 3, (64, 80)) for _ in images]

    class Labelled(Images):
        def __getitem__(self, i):
            return self.images[i], labels[i]

    by_hand = np.zeros((3, 3), np.int64)
    for image, label in zip(images, labels):
        x = TORCHVISION(image)[None]
        log_p = []
        for net in nets:
            with mf.no_grad():
                s = net(mf.Tensor(x)).data[0].astype(np.float64)
            log_p.append(s - np.log(np.exp(s - s.max(0)).sum(0)) - s.max(0))
        by_hand += confusion_matrix(label, ((log_p[0] + log_p[1]) / 2).argmax(0), 3)
    assert np.array_equal(score.ensemble_confusion(paths, Labelled(images)), by_hand)
    alone = score.ensemble_confusion(paths[:1], Labelled(images))
    assert np.array_equal(score.ensemble_confusion([paths[0], paths[0]], Labelled(images)), alone)
    assert not np.array_equal(alone, by_hand)  # the second net changes some calls
