"""One crop-and-resize for every source: TFDS datasets and image folders alike.

The recipe (the CelebA-64 one of score_sde / NCSN, applied to every dataset):

1. Crop (`crop='center'`): the central square of side `crop_size`, clamped to the shorter
   image side (`crop_size=0`: the shorter side). Offsets are floor((H - s) / 2) rows and
   floor((W - s) / 2) columns: for CelebA's 218x178 (HxW) images and s = 140 the crop is
   rows 39..178 and columns 19..158 (end-exclusive). `crop='none'` keeps the whole image,
   and the resize then changes its aspect ratio.
2. Resize to image_size x image_size with `tf.image.resize(method='bilinear',
   antialias=True)` in float32: when shrinking, each output pixel is a normalised triangle
   (tent) filter of the input, the tent stretched by in/out so every input pixel
   contributes (no aliasing); when enlarging (images smaller than the target) it is plain
   bilinear interpolation with half-pixel centres. A crop that is already the target size
   comes back unchanged.
3. Round half to even and cast to uint8 (the filter is a convex combination, so values stay
   in [0, 255]).
"""

CROPS = ('center', 'none')


def tensorflow():
  """TensorFlow, imported on first use (only TFDS and image-folder data need it), with its
  GPUs hidden so that it never takes accelerator memory from JAX (possible only before TF
  has initialised its devices)."""
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:
    pass
  return tf


def crop_and_resize(image, image_size: int, crop: str = 'center', crop_size: int = 0):
  """uint8 tf.Tensor [H, W, C] (static or dynamic H, W) -> uint8 [image_size, image_size, C]."""
  tf = tensorflow()
  if crop not in CROPS:
    raise ValueError(f'config.data.crop={crop!r}; choose from {CROPS}')
  if crop == 'center':
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    side = tf.minimum(h, w)
    if crop_size:
      side = tf.minimum(side, crop_size)
    image = tf.image.crop_to_bounding_box(image, (h - side) // 2, (w - side) // 2, side, side)
  resized = tf.image.resize(image, [image_size, image_size], method='bilinear',
                            antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def describe_resize(d, crop_size: int) -> str:
  """The preprocessing of config.data block `d` in words, for WORKDIR/dataset.json."""
  crop = (f'central {crop_size or "shorter-side"} px square crop' if d.crop == 'center'
          else 'no crop')
  return (f'{crop}, tf.image.resize bilinear antialias to {d.image_size}x{d.image_size}, '
          'rounded to uint8')
