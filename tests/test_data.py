"""The dataset loaders, their errors, the transforms and the batch stream, on fixtures written here."""

import os

import numpy as np
import pytest
import scipy.io
from PIL import Image

from minifcn.data import (
    VOC_CLASSES,
    Augment,
    BatchLoader,
    DataError,
    FolderSegmentation,
    SBDSegmentation,
    Shapes,
    VOCSegmentation,
)
from minifcn.data.transforms import hflip, jitter_colour, pad_to, rescale
from minifcn.preprocessing import CAFFE
from minifcn.viz import colorize

VOC_MINI = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "voc_mini")


def _image(rng, h, w):
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _label(rng, h, w, n_class=21, void=True):
    label = rng.integers(0, n_class, size=(h, w)).astype(np.uint8)
    if void:
        label[0, :] = 255
    return label


def write_voc(root, ids_by_split, year="2012", sizes=None, seed=0):
    """A VOC devkit in miniature: JPEGs (saved as PNG bytes would change nothing), palette PNG labels, lists."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, f"VOC{year}")
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    labels = {}
    for split, ids in ids_by_split.items():
        with open(os.path.join(folder, "ImageSets", "Segmentation", split + ".txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
        for i in ids:
            h, w = (sizes or {}).get(i, (20, 30))
            Image.fromarray(_image(rng, h, w)).save(os.path.join(folder, "JPEGImages", i + ".jpg"), quality=95)
            labels[i] = _label(rng, h, w)
            colorize(labels[i]).save(os.path.join(folder, "SegmentationClass", i + ".png"))
    return labels


def write_sbd(root, ids_by_split, seed=1):
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "dataset")
    os.makedirs(os.path.join(folder, "img"), exist_ok=True)
    os.makedirs(os.path.join(folder, "cls"), exist_ok=True)
    labels = {}
    for split, ids in ids_by_split.items():
        with open(os.path.join(folder, split + ".txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
        for i in ids:
            Image.fromarray(_image(rng, 16, 24)).save(os.path.join(folder, "img", i + ".jpg"))
            labels[i] = _label(rng, 16, 24, void=False)
            gt = {"Segmentation": labels[i], "Boundaries": np.zeros(1), "CategoriesPresent": np.unique(labels[i])}
            scipy.io.savemat(os.path.join(folder, "cls", i + ".mat"), {"GTcls": gt})
    return labels


# -- VOC -----------------------------------------------------------------------------------


def test_voc_reads_palette_indices_and_keeps_255(tmp_path):
    labels = write_voc(tmp_path, {"train": ["a", "b"], "val": ["c"]})
    for root in (tmp_path, tmp_path / "VOC2012"):  # the devkit, or VOC2012 itself
        ds = VOCSegmentation(str(root), "train")
        assert len(ds) == 2 and ds.n_class == 21 and ds.classes == VOC_CLASSES
        image, label = ds[1]
        assert image.dtype == np.uint8 and image.shape == (20, 30, 3)
        assert label.dtype == np.int64 and np.array_equal(label, labels["b"])
        assert (label[0] == 255).all() and ds.name(1) == "b"


def test_voc_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="(?s)nowhere.*does not exist.*JPEGImages"):
        VOCSegmentation(str(tmp_path / "nowhere"), "train")
    write_voc(tmp_path, {"train": ["a", "b"]})
    with pytest.raises(DataError, match="val.txt.*does not exist"):
        VOCSegmentation(str(tmp_path), "val")
    open(tmp_path / "VOC2012/ImageSets/Segmentation/empty.txt", "w").close()
    with pytest.raises(DataError, match="empty.txt.*is empty"):
        VOCSegmentation(str(tmp_path), "empty")
    os.remove(tmp_path / "VOC2012/SegmentationClass/b.png")
    with pytest.raises(DataError, match="label of image.*b.jpg.*missing.*b.png"):
        VOCSegmentation(str(tmp_path), "train")


def test_bad_files_are_named_when_read(tmp_path):
    write_voc(tmp_path, {"train": ["a", "b", "c", "d"]})
    seg = tmp_path / "VOC2012/SegmentationClass"
    with open(tmp_path / "VOC2012/JPEGImages/a.jpg", "wb") as f:
        f.write(b"not an image")
    bad = np.zeros((20, 30), np.uint8)
    bad[3, 4] = 21  # one value past VOC's 21 classes
    colorize(bad).save(seg / "b.png")
    colorize(np.zeros((21, 30), np.uint8)).save(seg / "c.png")  # one row too many
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(seg / "d.png")  # an RGB label
    ds = VOCSegmentation(str(tmp_path), "train")
    with pytest.raises(DataError, match=r"image '.*a\.jpg' cannot be read"):
        ds[0]
    with pytest.raises(DataError, match=r"label '.*b\.png' holds values 21 outside \[0, 21\)"):
        ds[1]
    with pytest.raises(DataError, match=r"c\.jpg' is 30x20 but its label '.*c\.png' is 30x21"):
        ds[2]
    with pytest.raises(DataError, match=r"d\.png' is a RGB image"):
        ds[3]


@pytest.mark.skipif(not os.path.isdir(VOC_MINI), reason="../shared/data/voc_mini is absent")
def test_voc_mini_real_labels():
    ds = VOCSegmentation(VOC_MINI, "trainval")
    assert [ds.name(i) for i in range(len(ds))] == ["2007_000063", "2007_000129"]
    present = [set(np.unique(ds[i][1]).tolist()) for i in range(2)]
    assert present == [{0, 9, 12, 255}, {0, 2, 15, 255}]  # as the folder's README states
    image, label = ds[1]
    assert image.shape[:2] == label.shape and image.dtype == np.uint8
    with open(os.path.join(VOC_MINI, "classes.txt")) as f:
        assert tuple(f.read().split()) == VOC_CLASSES


# -- SBD -----------------------------------------------------------------------------------


def test_sbd_reads_mat_labels(tmp_path):
    labels = write_sbd(tmp_path, {"train": ["s1", "s2"], "val": ["s3"]})
    ds = SBDSegmentation(str(tmp_path), "train")
    assert len(ds) == 2 and ds.n_class == 21
    image, label = ds[1]
    assert image.shape == (16, 24, 3) and np.array_equal(label, labels["s2"])
    assert np.array_equal(SBDSegmentation(str(tmp_path / "dataset"), "val")[0][1], labels["s3"])


def test_sbd_seg11valid_is_voc2011_val_minus_sbd_train(tmp_path):
    write_sbd(tmp_path / "sbd", {"train": ["x1", "x2"], "val": ["x3"]})
    write_voc(tmp_path / "voc", {"val": ["x2", "v1", "v2"]}, year="2011")
    ds = SBDSegmentation(str(tmp_path / "sbd"), "seg11valid", voc_root=str(tmp_path / "voc"))
    assert [ds.name(i) for i in range(len(ds))] == ["v1", "v2"]
    assert ds[0][1].dtype == np.int64 and (ds[0][1][0] == 255).all()
    with pytest.raises(DataError, match="needs voc_root"):
        SBDSegmentation(str(tmp_path / "sbd"), "seg11valid")


def test_sbd_errors(tmp_path):
    with pytest.raises(DataError, match="(?s)does not exist.*dataset/cls"):
        SBDSegmentation(str(tmp_path / "none"), "train")
    write_sbd(tmp_path, {"train": ["s1"]})
    scipy.io.savemat(tmp_path / "dataset/cls/s1.mat", {"Other": np.zeros((2, 2))})
    with pytest.raises(DataError, match=r"s1\.mat' has no GTcls.Segmentation"):
        SBDSegmentation(str(tmp_path), "train")[0]
    with open(tmp_path / "dataset/cls/s1.mat", "wb") as f:
        f.write(b"garbage")
    with pytest.raises(DataError, match=r"s1\.mat' cannot be read"):
        SBDSegmentation(str(tmp_path), "train")[0]


# -- folders -------------------------------------------------------------------------------


def test_folder_pairs_by_stem_with_its_own_class_count(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "im").mkdir()
    (tmp_path / "lb").mkdir()
    truth = {}
    for stem, ext in (("b", ".png"), ("a", ".jpg")):
        Image.fromarray(_image(rng, 8, 10)).save(tmp_path / "im" / (stem + ext))
        truth[stem] = rng.integers(0, 3, size=(8, 10)).astype(np.uint8)
        Image.fromarray(truth[stem], mode="L").save(tmp_path / "lb" / (stem + ".png"))
    Image.fromarray(truth["a"], mode="L").save(tmp_path / "lb" / "extra.png")  # a label without image: ignored
    ds = FolderSegmentation(str(tmp_path / "im"), str(tmp_path / "lb"), n_class=3)
    assert [ds.name(i) for i in range(len(ds))] == ["a", "b"] and ds.classes == ("0", "1", "2")
    assert np.array_equal(ds[1][1], truth["b"])
    with pytest.raises(DataError, match=r"label '.*a\.png' holds values 2 outside \[0, 2\)"):
        FolderSegmentation(str(tmp_path / "im"), str(tmp_path / "lb"), n_class=2)[0]
    os.remove(tmp_path / "lb" / "b.png")
    with pytest.raises(DataError, match=r"image '.*b\.png' has no label '.*lb/b\.png'"):
        FolderSegmentation(str(tmp_path / "im"), str(tmp_path / "lb"), n_class=3)
    with pytest.raises(DataError, match="folder '.*nope' does not exist"):
        FolderSegmentation(str(tmp_path / "nope"), str(tmp_path / "lb"), n_class=3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        FolderSegmentation(str(tmp_path / "empty"), str(tmp_path / "lb"), n_class=3)


# -- transforms ----------------------------------------------------------------------------


def test_rescale_resizes_labels_by_nearest_neighbour():
    label = np.arange(12).reshape(3, 4)
    image = np.zeros((3, 4, 3), np.uint8)
    big_image, big = rescale(image, label, 2.0)
    assert big_image.shape == (6, 8, 3)
    assert np.array_equal(big, np.repeat(np.repeat(label, 2, 0), 2, 1))  # no value that was not there
    _, small = rescale(image, np.repeat(np.repeat(label, 2, 0), 2, 1), 0.5)
    assert np.array_equal(small, label)


def test_pad_fills_labels_with_255_and_flip_mirrors_both():
    image = np.full((2, 3, 3), 7, np.uint8)
    label = np.array([[0, 1, 2], [3, 4, 5]])
    pimage, plabel = pad_to(image, label, (3, 5), fill=(1, 2, 3))
    assert np.array_equal(plabel, [[0, 1, 2, 255, 255], [3, 4, 5, 255, 255], [255] * 5])
    assert (pimage[:2, :3] == 7).all() and (pimage[2, 0] == [1, 2, 3]).all() and (pimage[0, 4] == [1, 2, 3]).all()
    fimage, flabel = hflip(image, label)
    assert np.array_equal(flabel, [[2, 1, 0], [5, 4, 3]])


def test_augment_keeps_image_and_label_aligned():
    """The label is a function of the image here (blocks of 6x6 pixels), so any misalignment would show."""
    rng = np.random.default_rng(0)
    label = np.kron(rng.integers(0, 5, size=(5, 7)), np.ones((6, 6), np.int64))  # (30, 42)
    image = np.repeat((label * 40)[..., None], 3, axis=-1).astype(np.uint8)
    exact = Augment(flip=True, crop_size=(24, 24), fill=(250, 250, 250))
    scaled = Augment(flip=True, scale=(0.5, 2.0), crop_size=(24, 24), fill=(250, 250, 250))
    for seed in range(10):
        a_image, a_label = exact(image, label, np.random.default_rng(seed))
        inside = a_label != 255
        assert np.array_equal(a_image[..., 0][inside], (a_label * 40)[inside])
        a_image, a_label = scaled(image, label, np.random.default_rng(seed))
        assert a_image.shape == (24, 24, 3) and a_label.shape == (24, 24)
        inside = a_label != 255
        assert (a_image[~inside] == 250).all()
        # Bilinear blending only touches block borders; a one-pixel shift would break whole rows.
        assert np.mean(np.abs(a_image[..., 0][inside].astype(int) - a_label[inside] * 40) <= 20) > 0.8


def test_colour_jitter_is_brightness_then_contrast_then_saturation_pixel_by_pixel():
    """A direct loop over the pixels, in float64, with the factors drawn from the same generator."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(5, 4, 4), dtype=np.uint8)  # RGB and a depth channel
    label = rng.integers(0, 3, size=(5, 4))
    b, c, s = np.random.default_rng(7).uniform(0.7, 1.3, 3)
    rgb = image[:, :, :3].astype(np.float64) * b
    grey = lambda p: 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]  # noqa: E731
    mean = np.mean([grey(rgb[i, j]) for i in range(5) for j in range(4)])
    expected = image.copy()
    for i in range(5):
        for j in range(4):
            p = mean + c * (rgb[i, j] - mean)
            p = grey(p) + s * (p - grey(p))
            expected[i, j, :3] = np.clip(np.rint(p), 0, 255)
    out = jitter_colour(image, 0.3, np.random.default_rng(7))
    assert out.dtype == np.uint8 and np.abs(out.astype(int) - expected).max() <= 1  # float32 against float64
    assert np.array_equal(out[:, :, 3], image[:, :, 3])
    assert np.array_equal(jitter_colour(image, 0.0, np.random.default_rng(7)), image)
    # In Augment it comes first and leaves the label alone; off by default.
    jittered, same_label = Augment(flip=False, colour=0.3)(image, label, np.random.default_rng(7))
    assert np.array_equal(jittered, out) and same_label is label
    assert Augment(flip=False)(image, label, np.random.default_rng(7))[0] is image


# -- the batch stream ----------------------------------------------------------------------


def test_batches_visit_every_item_once_per_epoch_and_are_reproducible():
    ds = Shapes("train", size=32, length=10)
    loader = BatchLoader(ds, 3, CAFFE, seed=5)
    first_epoch = [loader.index(j) for j in range(10)]
    assert sorted(first_epoch) == list(range(10)) and first_epoch != list(range(10))
    assert sorted(loader.index(j) for j in range(10, 20)) == list(range(10))
    x, labels = loader.batch(4)
    assert x.shape == (3, 3, 32, 32) and x.dtype == np.float32 and labels.shape == (3, 32, 32)
    assert np.array_equal(x[1], CAFFE(ds[loader.index(13)][0]))  # batch 4 holds samples 12, 13, 14
    again = BatchLoader(ds, 3, CAFFE, seed=5).batch(4)  # a fresh loader, as after a resume
    assert np.array_equal(again[0], x) and np.array_equal(again[1], labels)


def test_a_batch_of_different_sizes_names_both_items(tmp_path):
    write_voc(tmp_path, {"train": ["a", "b"]}, sizes={"b": (22, 30)})
    ds = VOCSegmentation(str(tmp_path), "train")
    with pytest.raises(DataError, match=r"item \d \([ab]\) is 30x2\d and item \d \([ab]\) is 30x2\d.*--crop-size"):
        BatchLoader(ds, 2, CAFFE, shuffle=False).batch(0)
    x, labels = BatchLoader(ds, 2, CAFFE, Augment(flip=False, crop_size=(21, 21)), shuffle=False).batch(0)
    assert x.shape == (2, 3, 21, 21) and (labels[0][20] == 255).all()  # a (20-row) padded with 255


def test_prefetch_gives_each_batch_of_the_stream_and_makes_the_next_in_the_background():
    import threading

    from minifcn.data.loader import Prefetch

    made: list[tuple[int, int]] = []  # (iteration, thread that made it)
    loader = BatchLoader(Shapes("train", size=16, length=7), 2, CAFFE, seed=3)

    def batch(t):
        made.append((t, threading.get_ident()))
        if t == 6:
            raise DataError("batch 6 is broken")
        return loader.batch(t)

    with Prefetch(batch, stop=7) as fetch:
        for t in (2, 3, 4, 1, 2, 3, 4, 5):  # 1: out of order, made on the spot (the 5 in the making dropped)
            x, labels = fetch(t)
            expected = loader.batch(t)
            assert np.array_equal(x, expected[0]) and np.array_equal(labels, expected[1])
        with pytest.raises(DataError, match="batch 6 is broken"):  # raised by the fetch that asks for it
            fetch(6)
    main = threading.get_ident()
    assert [t for t, thread in made if thread == main] == [2, 1]
    background = sorted(t for t, thread in made if thread != main)
    assert background in ([2, 3, 3, 4, 4, 5, 6], [2, 3, 3, 4, 4, 5, 5, 6])  # the dropped 5: made or not yet
    assert max(t for t, _ in made) == 6  # nothing at or past stop
