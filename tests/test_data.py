"""Loaders: real files in ../shared/datasets and small files in the official layouts."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data
from PIL import Image

from robcurves.data import load
from robcurves.data.formats import load_path, read_idx


def assert_unit(d) -> None:
    assert d.x.dtype == np.float32 and d.y.dtype == np.int64
    assert float(d.x.min()) >= 0.0 and float(d.x.max()) <= 1.0


# -- real files --------------------------------------------------------------------------------


def test_real_mnist_idx_folder_and_file() -> None:
    root = shared_data("mnist")
    d = load(root)
    assert d.x.shape == (10000, 1, 28, 28) and d.name == "mnist-test"
    assert np.bincount(d.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert d.x.max() == 1.0 and d.info["bit_depth"] == 8
    same = load(root / "t10k-images-idx3-ubyte.gz")
    assert np.array_equal(same.x, d.x) and np.array_equal(same.y, d.y)


def test_real_fashion_mnist_both_splits() -> None:
    root = shared_data("fashion-mnist")
    tr = load(root, split="train")
    assert tr.x.shape == (60000, 1, 28, 28) and np.bincount(tr.y).tolist() == [6000] * 10
    te = load(root, split="test")
    assert te.n == 10000 and np.bincount(te.y).tolist() == [1000] * 10
    assert_unit(te)


def test_real_gtsrb_npz() -> None:
    d = load(shared_data("gtsrb/gtsrb_test_32x32.npz"))
    assert d.x.shape == (12630, 3, 32, 32) and d.y.max() == 42 and len(np.unique(d.y)) == 43
    assert_unit(d)
    assert d.info["bit_depth"] == 8


@pytest.mark.slow
def test_real_cifar10_jpeg_archive() -> None:
    d = load(shared_data("cifar10-jpeg/cifar10_test_jpg.tar.gz"))
    assert d.x.shape == (10000, 3, 32, 32) and np.bincount(d.y).tolist() == [1000] * 10
    assert d.classes[0] == "airplane" and d.classes[-1] == "truck"
    assert_unit(d)


@pytest.mark.slow
def test_real_tiny_imagenet_val_archive() -> None:
    d = load(shared_data("tiny-imagenet-200/tiny-imagenet-200-val.tar"))
    assert d.x.shape == (10000, 3, 64, 64) and len(d.classes) == 200
    assert np.bincount(d.y, minlength=200).tolist() == [50] * 200
    assert_unit(d)


# -- IDX and npz written here ------------------------------------------------------------------


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    codes = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}
    head = bytes([0, 0, codes[arr.dtype.type], arr.ndim]) + np.array(
        arr.shape, dtype=">u4").tobytes()
    body = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    data = head + body
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path: Path, gz: bool) -> None:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 4, 5, 9], dtype=np.uint8)
    sfx = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", imgs, gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", labels, gz)
    d = load_path(tmp_path, split="train")
    assert d.x.shape == (7, 1, 5, 4)
    np.testing.assert_array_equal(d.x[:, 0], imgs.astype(np.float32) / 255)
    assert d.y.tolist() == labels.tolist()
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        load_path(tmp_path, split="test")
    with pytest.raises(ValueError, match="split must be"):
        load_path(tmp_path, split="valid")


def test_idx_malformed(tmp_path: Path) -> None:
    f = tmp_path / "t10k-images-idx3-ubyte"
    f.write_bytes(bytes([0, 0, 8, 3]) + np.array([10, 28, 28], dtype=">u4").tobytes() + b"x" * 5)
    with pytest.raises(ValueError, match=r"announces shape \(10, 28, 28\)"):
        read_idx(f)
    f.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(ValueError, match="corrupt gzip"):
        read_idx(f)
    g = tmp_path / "images.idx"
    g.write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(g)
    write_idx(tmp_path / "a-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8), False)
    write_idx(tmp_path / "a-labels-idx1-ubyte", np.zeros(4, np.uint8), False)
    with pytest.raises(ValueError, match="3 images but .* 4 labels"):
        load_path(tmp_path / "a-images-idx3-ubyte")


def test_npz_keys_layout_and_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x_test=x, y_test=np.arange(6), classes=np.array(list("abcdef")))
    d = load(tmp_path / "a.npz")
    assert d.x.shape == (6, 3, 8, 8) and d.classes == tuple("abcdef")
    np.testing.assert_array_equal(d.x[2, 1], x[2, :, :, 1] / np.float32(255))
    np.savez(tmp_path / "b.npz", feats=rng.random((4, 3)), lab=np.array([1, 0, 1, 0]))
    d = load(tmp_path / "b.npz", x_key="feats", y_key="lab")
    assert d.x.shape == (4, 3) and d.info == {}
    with pytest.raises(ValueError, match=r"no input/label arrays found; it holds \['feats'"):
        load(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", x=rng.random((3, 2)) * 255, y=np.arange(3))
    with pytest.raises(ValueError, match="scale=1/255"):
        load(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", x=rng.random((3, 2)), y=np.array([0, -1, 2]))
    with pytest.raises(ValueError, match="non-negative"):
        load(tmp_path / "d.npz")
    (tmp_path / "e.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="e.npz: not a readable .npz"):
        load(tmp_path / "e.npz")


# -- CIFAR, image folders, archives ------------------------------------------------------------


def test_cifar10_and_100_batches(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    data = rng.integers(0, 256, (5, 3072), dtype=np.uint8)
    with open(c10 / "test_batch", "wb") as fh:
        pickle.dump({b"data": data, b"labels": [0, 1, 2, 3, 9]}, fh)
    with open(c10 / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, fh)
    d = load(tmp_path)  # the parent folder holding cifar-10-batches-py
    assert d.x.shape == (5, 3, 32, 32) and d.name == "cifar10-test" and d.classes[9] == "c9"
    np.testing.assert_array_equal(d.x[1].reshape(-1), data[1] / np.float32(255))
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        load(c10, split="train")
    c100 = tmp_path / "cifar-100-python"
    c100.mkdir()
    with open(c100 / "test", "wb") as fh:
        pickle.dump({b"data": data, b"fine_labels": [5, 99, 0, 1, 2],
                     b"coarse_labels": [0, 19, 1, 1, 2]}, fh)
    with open(c100 / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": [b"f%d" % i for i in range(100)],
                     b"coarse_label_names": [b"k%d" % i for i in range(20)]}, fh)
    f = load(c100)
    assert f.y.tolist() == [5, 99, 0, 1, 2] and f.num_classes == 100
    assert load(c100, labels="coarse").classes[19] == "k19"
    (c100 / "test").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a CIFAR python batch"):
        load(c100)


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_image_folder_and_archive(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    root = tmp_path / "pics"
    imgs = {}
    for cls in ("cat", "dog"):
        (root / "test" / cls).mkdir(parents=True)
        for i in range(3):
            a = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
            (root / "test" / cls / f"{i}.png").write_bytes(png(a))
            imgs[(cls, i)] = a
    d = load(root)
    assert d.x.shape == (6, 3, 6, 5) and d.classes == ("cat", "dog")
    assert d.y.tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(d.x[4], imgs[("dog", 1)].transpose(2, 0, 1) / np.float32(255))
    tar = tmp_path / "pics.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(root / "test", arcname="test")
    t = load(tar)
    np.testing.assert_array_equal(t.x, d.x)
    assert t.y.tolist() == d.y.tolist() and t.classes == d.classes
    # a different size is an error naming both files, unless size= is given
    (root / "test" / "dog" / "9.png").write_bytes(png(np.zeros((7, 7, 3), np.uint8)))
    with pytest.raises(ValueError, match="differ in size.*9.png"):
        load(root)
    assert load(root, size=(6, 5)).n == 7
    (root / "test" / "dog" / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.jpg: not a readable image"):
        load(root, size=(6, 5))


def test_gtsrb_final_test_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    images = tmp_path / "GTSRB" / "Final_Test" / "Images"
    images.mkdir(parents=True)
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i, cls in enumerate([0, 42, 7]):
        a = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
        Image.fromarray(a).save(images / f"{i:05d}.ppm")
        rows.append(f"{i:05d}.ppm;36;40;5;5;30;34;{cls}")
    (images / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    d = load(tmp_path)
    assert d.x.shape == (3, 3, 32, 32) and d.y.tolist() == [0, 42, 7]
    assert_unit(d)
    c = load(tmp_path, crop=True, size=(16, 16))
    assert c.x.shape == (3, 3, 16, 16)
    (images / "GT-final_test.csv").write_text(rows[0] + "\n00000.ppm;36;40;5;5;30;34;stop\n")
    with pytest.raises(ValueError, match="line 2: ClassId 'stop'"):
        load(tmp_path)


def tiny_layout(root: Path, rng: np.random.Generator) -> None:
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("n001\nn002\n")
    (root / "words.txt").write_text("n001\tgoldfish, Carassius auratus\nn002\ttabby, cat\n")
    lines = []
    for i, w in enumerate(["n002", "n001", "n002"]):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
            root / "val" / "images" / f"val_{i}.JPEG", format="JPEG")
        lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t10\t10")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    for w in ("n001", "n002"):
        (root / "train" / w / "images").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(
            root / "train" / w / "images" / f"{w}_0.JPEG", format="JPEG")


def test_tiny_imagenet_folder_and_tar(tmp_path: Path) -> None:
    root = tmp_path / "tiny-imagenet-200"
    tiny_layout(root, np.random.default_rng(5))
    v = load(tmp_path)
    assert v.x.shape == (3, 3, 64, 64) and v.y.tolist() == [1, 0, 1]
    assert v.classes == ("goldfish", "tabby")
    t = load(root, split="train")
    assert t.x.shape == (2, 3, 64, 64) and t.y.tolist() == [0, 1]  # grey promoted to RGB
    tar = tmp_path / "tiny.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(root, arcname="tiny-imagenet-200")
    np.testing.assert_array_equal(load(tar).x, v.x)
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn999\n")
    with pytest.raises(ValueError, match="line 1: expected .* wnid from wnids.txt"):
        load(root)


def test_uci_har_text(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    (tmp_path / "test").mkdir()
    x = rng.uniform(-1, 1, (12, 561))
    x[0, 0], x[1, 1] = -1.0, 1.0
    np.savetxt(tmp_path / "test" / "X_test.txt", x, fmt="%.7e")
    y = np.array([1, 2, 3, 4, 5, 6] * 2)
    np.savetxt(tmp_path / "test" / "y_test.txt", y, fmt="%d")
    d = load(tmp_path)
    assert d.x.shape == (12, 561) and d.y.tolist() == (y - 1).tolist()
    assert d.x[0, 0] == 0.0 and d.x[1, 1] == 1.0
    np.testing.assert_allclose(d.x, (x + 1) / 2, atol=1e-6)
    assert d.classes[5] == "LAYING"
    np.savetxt(tmp_path / "test" / "y_test.txt", np.r_[y[:-1], 7], fmt="%d")
    with pytest.raises(ValueError, match="line 12: label 7 is not one of 1..6"):
        load(tmp_path)
    np.savetxt(tmp_path / "test" / "y_test.txt", y, fmt="%d")
    x[3, 3] = 1.5
    np.savetxt(tmp_path / "test" / "X_test.txt", x, fmt="%.7e")
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\]; found .* max 1.5"):
        load(tmp_path)


def test_unknown_format_named(tmp_path: Path) -> None:
    f = tmp_path / "data.csv"
    f.write_text("1,2\n")
    with pytest.raises(ValueError, match="data.csv: file format not recognised"):
        load(f)
    with pytest.raises(FileNotFoundError, match="neither a registered name"):
        load(tmp_path / "missing")


def test_named_sets_from_robcurves_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBCURVES_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST not found; looked in"):
        load("fmnist")
    (tmp_path / "fashion-mnist").mkdir()
    write_idx(tmp_path / "fashion-mnist" / "t10k-images-idx3-ubyte.gz",
              np.full((2, 3, 3), 255, np.uint8), True)
    write_idx(tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz",
              np.array([3, 4], np.uint8), True)
    d = load("fashion-mnist")
    assert d.x.shape == (2, 1, 3, 3) and d.y.tolist() == [3, 4] and d.x.min() == 1.0


def test_npz_truncated_damaged_or_empty_is_one_line_naming_the_file(tmp_path: Path) -> None:
    """Issue 13.8: a truncated .npz raised BadZipFile, an empty one loaded as a 0-point set."""
    good = tmp_path / "good.npz"
    np.savez(good, x=np.random.default_rng(0).random((20, 1, 4, 4)).astype(np.float32),
             y=np.arange(20) % 3)
    raw = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(raw[: len(raw) // 2])
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(raw[:100] + b"\0" * 300 + raw[400:])  # member header overwritten
    empty = tmp_path / "empty.npz"
    np.savez(empty, x=np.zeros((0, 1, 4, 4), np.float32), y=np.zeros(0, np.int64))
    for f, expected in ((truncated, "numpy.savez"), (damaged, "numpy.savez"),
                        (empty, "at least one input")):
        with pytest.raises(ValueError) as err:
            load(f)
        msg = str(err.value)
        assert str(f) in msg and expected in msg and "\n" not in msg
    assert load(good).n == 20
