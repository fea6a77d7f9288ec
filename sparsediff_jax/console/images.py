"""Image conversions and sample grids (PNG via PIL)."""

import io

import numpy as np
from PIL import Image

from sparsediff_jax.runtime import atomic_io


def to_uint8(x) -> np.ndarray:
  """[-1, 1] floats -> uint8 [0, 255], the quantisation saved PNGs have."""
  return np.asarray(np.clip(np.round((np.asarray(x, np.float32) + 1.0) * 127.5), 0, 255),
                    np.uint8)


def make_grid(images: np.ndarray, rows: int, pad: int = 2) -> np.ndarray:
  """uint8 [N, H, W, C] -> one uint8 [rows*(H+pad)+pad, cols*(W+pad)+pad, C] grid."""
  n, h, w, c = images.shape
  cols = -(-n // rows)
  grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
  for i, img in enumerate(images):
    r, q = divmod(i, cols)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = img
  return grid


def save_png(path: str, image: np.ndarray, upscale: int = 1) -> None:
  """Writes uint8 [H, W, C] (C = 1 or 3) to a local or gs:// path, atomically;
  nearest-neighbour upscaling keeps pixels crisp."""
  pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  if upscale > 1:
    pil = pil.resize((pil.width * upscale, pil.height * upscale), Image.NEAREST)
  buffer = io.BytesIO()
  pil.save(buffer, format='PNG')
  atomic_io.write_bytes(path, buffer.getvalue())


def pyplot():
  """matplotlib.pyplot on the file-only Agg backend (no display needed on servers)."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt


def save_figure(fig, path: str, dpi: int = 100) -> str:
  """Writes a matplotlib figure as PNG (creating folders, atomically), closes it, returns
  the path."""
  fig.tight_layout()
  try:
    atomic_io.save_figure(fig, path, dpi=dpi)
  finally:
    pyplot().close(fig)
  return path
