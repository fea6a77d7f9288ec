"""Training images from a folder (searched recursively) or a .zip of PNG/JPEG files.

Files are identified by their path relative to the folder (or zip root), '/'-separated,
and ordered by that string (code-point order): a folder and a zip of it give the same
dataset. Names ending in .png, .jpg or .jpeg (any case) are images; other files, hidden
files and __MACOSX entries are ignored.

Colour rule (every image becomes 8-bit RGB):
- the EXIF orientation of a JPEG is applied first (the image as viewers show it);
- grayscale (L) is copied into R, G and B; 16-bit grayscale (Pillow modes I;16 and I) is
  first scaled to 8 bits (value / 257, rounded); palette images use their palette colours;
- images with transparency (RGBA, LA, palette with a transparent index) are composited
  over a white background: fully transparent pixels become white whatever RGB they store;
- CMYK and other modes use Pillow's conversion to RGB.
Then every image gets the crop and resize of `preprocess.py` (smaller images are enlarged).
"""

import concurrent.futures
import hashlib
import io
import os
import warnings
import zipfile

import numpy as np
import PIL.Image
import PIL.ImageOps

from sparsediff_jax import errors, registry
from sparsediff_jax.data.preprocess import crop_and_resize, describe_resize
from sparsediff_jax.data.source import Source

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')
BAD_IMAGE_POLICIES = ('error', 'skip')


# An image file of the folder dataset could not be decoded.
BadImageError = errors.BadImageError


def _is_image_name(rel_path: str) -> bool:
  parts = rel_path.split('/')
  return (rel_path.lower().endswith(IMAGE_SUFFIXES) and parts[0] != '__MACOSX'
          and not any(p.startswith('.') for p in parts))


def list_images(root: str) -> list[str]:
  """Relative paths of the images under `root` (a directory or a .zip), sorted."""
  if os.path.isdir(root):
    names = [os.path.relpath(os.path.join(d, f), root).replace(os.sep, '/')
             for d, _, files in os.walk(root) for f in files]
  elif zipfile.is_zipfile(root):
    with zipfile.ZipFile(root) as zf:
      names = [n for n in zf.namelist() if not n.endswith('/')]
  else:
    raise FileNotFoundError(f'config.data.folder={root!r} is neither a directory nor a '
                            '.zip file; point it at the images to train on')
  names = sorted(n for n in names if _is_image_name(n))
  if not names:
    raise FileNotFoundError(f'config.data.folder={root!r} holds no .png/.jpg/.jpeg files')
  return names


def to_rgb(image: PIL.Image.Image) -> np.ndarray:
  """A decoded Pillow image -> uint8 [H, W, 3] by the colour rule of this module."""
  image = PIL.ImageOps.exif_transpose(image)
  if image.mode == 'I' or image.mode.startswith('I;16'):
    scaled = np.round(np.clip(np.asarray(image, np.float64) / 257.0, 0, 255)).astype(np.uint8)
    image = PIL.Image.fromarray(scaled, 'L')
  if image.mode == 'P':
    image = image.convert('RGBA' if 'transparency' in image.info else 'RGB')
  if image.mode in ('RGBA', 'LA', 'PA'):
    rgba = image.convert('RGBA')
    white = PIL.Image.new('RGBA', rgba.size, (255, 255, 255, 255))
    image = PIL.Image.alpha_composite(white, rgba)
  return np.asarray(image.convert('RGB'), np.uint8)


def decode(data: bytes) -> np.ndarray:
  """Encoded PNG/JPEG bytes -> uint8 [H, W, 3]; raises on any decoding failure."""
  try:
    image = PIL.Image.open(io.BytesIO(data))
  except PIL.UnidentifiedImageError:
    # Pillow's own message names the in-memory buffer ('<_io.BytesIO object at 0x...>'),
    # which means nothing to the user; the caller names the file.
    raise PIL.UnidentifiedImageError(
        f'not an image format Pillow recognises ({len(data)} bytes starting '
        f'{data[:8]!r})') from None
  with image:
    image.load()   # decode now: a truncated file fails here, not later.
    return to_rgb(image)


def _reader(root: str):
  if os.path.isdir(root):
    def read(name):
      with open(os.path.join(root, name), 'rb') as f:
        return f.read()
    return read, lambda: None
  zf = zipfile.ZipFile(root)
  return zf.read, zf.close


def load_images(root: str, names: list[str], data_config) -> tuple[np.ndarray, list[str]]:
  """Decodes, crops and resizes `names` (relative to `root`), keeping their order.

  Returns uint8 [n, S, S, 3] for the images that decoded, and the names that did not (only
  with on_bad_image='skip'; with 'error' the first bad file raises BadImageError). Each bad
  file is named in a warning.
  """
  policy = data_config.on_bad_image
  if policy not in BAD_IMAGE_POLICIES:
    raise ValueError(f'config.data.on_bad_image={policy!r}; choose from {BAD_IMAGE_POLICIES}')
  size = data_config.image_size
  read, close = _reader(root)

  def one(name):
    try:
      pixels = decode(read(name))
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, ...
      return err
    return crop_and_resize(pixels, size, data_config.crop, data_config.crop_size).numpy()

  out = np.empty((len(names), size, size, 3), np.uint8)
  kept, bad = 0, []
  # Threads overlap file reads, Pillow decoding and TF resizing (all release the GIL);
  # map keeps the file order.
  pool = concurrent.futures.ThreadPoolExecutor(os.cpu_count())
  try:
    for name, result in zip(names, pool.map(one, names)):
      if isinstance(result, Exception):
        message = f'cannot decode image {os.path.join(root, name)}: {result}'
        if policy == 'error':
          raise BadImageError(message + " (set config.data.on_bad_image='skip' to skip "
                              'unreadable files)') from result
        warnings.warn(message + '; skipped')
        bad.append(name)
      else:
        out[kept] = result
        kept += 1
  finally:
    pool.shutdown(cancel_futures=True)   # on an error, do not decode the rest first.
    close()
  return out[:kept], bad


def fingerprint(root: str, names: list[str]) -> str:
  """SHA-256 over the names, sizes and full contents of the files `names` under `root`:
  replacing a file by another of the same name changes it."""
  h = hashlib.sha256()
  read, close = _reader(root)
  try:
    for name in names:
      data = read(name)
      h.update(f'{name}\t{len(data)}\t'.encode())
      h.update(hashlib.sha256(data).digest())
  finally:
    close()
  return h.hexdigest()


def _load_selected(d, names: list[str]) -> np.ndarray:
  images, bad = load_images(d.folder, names, d)
  if bad:
    warnings.warn(f'{len(bad)} of {len(names)} image files in {d.folder} could not be '
                  f'decoded and were skipped; {len(images)} images remain')
  if not len(images):
    raise BadImageError(f'none of the {len(names)} selected files in {d.folder} decoded')
  return images


def open_folder(config) -> Source:
  """PNG/JPEG files under config.data.folder (a directory or a .zip), sorted by path."""
  d = config.data
  names = list_images(d.folder)
  return Source(
      available=len(names), order='relative-path',
      ids=lambda n: names[:n],
      load=lambda lo, hi: _load_selected(d, names[lo:hi]),
      facts={'source': f'image folder {d.folder}', 'split': 'all files',
             'preprocessing': 'RGB by the rule of data/folders.py, '
                              + describe_resize(d, d.crop_size),
             'on_bad_image': d.on_bad_image},
      fingerprint=lambda n: fingerprint(d.folder, names[:n]))


# Images only: no fresh images, no metrics of its own.
registry.DATASETS.add('folder', registry.Dataset(source=open_folder))
