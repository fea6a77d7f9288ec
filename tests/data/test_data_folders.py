"""Image folders and zips: listing order, colour conversion, bad files, crop and resize."""

import io
import os
import zipfile

from tests.helpers.data_fakes import index_image, make_config

import numpy as np
import PIL.Image
import pytest

from sparsediff_jax import data
from sparsediff_jax.data import folders


def save(path, image: PIL.Image.Image, **kwargs):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image.save(path, **kwargs)


@pytest.fixture
def tree(tmp_path):
  """A nested folder of 6 index-coded images of mixed size and format, plus clutter."""
  root = tmp_path / 'images'
  layout = ['b/02.png', 'a/x/01.jpg', 'a/00.PNG', 'c/05.jpeg', 'b/03.png', 'b/04.png']
  for rel in layout:
    i = int(os.path.basename(rel)[:2])
    size = (40, 30) if i % 2 else (12, 20)   # (H, W); the small ones are enlarged.
    save(str(root / rel), PIL.Image.fromarray(index_image(i, *size)), quality=100)
  (root / 'notes.txt').write_text('not an image')
  save(str(root / '.hidden' / '99.png'), PIL.Image.fromarray(index_image(99)))
  return root


def red(images: np.ndarray) -> np.ndarray:
  """The index of each (constant) index_image: its red value; JPEG may move it by 1."""
  return images[:, 0, 0, 0].astype(int)


def zip_of(root, path):
  with zipfile.ZipFile(path, 'w') as zf:
    for d, _, files in os.walk(root):
      for f in files:
        full = os.path.join(d, f)
        zf.write(full, os.path.relpath(full, root))
  return str(path)


def test_nested_folder_and_zip_give_the_same_ordered_dataset(tree, tmp_path):
  expected_names = ['a/00.PNG', 'a/x/01.jpg', 'b/02.png', 'b/03.png', 'b/04.png', 'c/05.jpeg']
  from_dir = make_config('folder', folder=str(tree), image_size=16, num_train_examples=0)
  from_zip = make_config('folder', folder=zip_of(tree, tmp_path / 'images.zip'),
                         image_size=16, num_train_examples=0)
  assert folders.list_images(from_dir.data.folder) == expected_names
  assert folders.list_images(from_zip.data.folder) == expected_names
  images = data.load_train_images(from_dir)
  assert images.shape == (6, 16, 16, 3) and images.dtype == np.uint8
  # Constant images stay constant through crop, enlargement and (quality-100) JPEG.
  np.testing.assert_allclose(red(images), np.arange(6), atol=1)
  np.testing.assert_array_equal(data.load_train_images(from_zip), images)
  described = [data.describe_dataset(c) for c in (from_dir, from_zip)]
  assert described[0]['selection_sha256'] == described[1]['selection_sha256']
  assert described[0]['num_examples'] == 6


def test_subset_and_process_parts_follow_the_sorted_paths(tree):
  config = make_config('folder', folder=str(tree), image_size=8, num_train_examples=5)
  parts = [red(data.load_train_images(config, process_index=i, process_count=2))
           for i in range(2)]
  np.testing.assert_allclose(np.concatenate(parts), np.arange(5), atol=1)
  assert [len(p) for p in parts] == [2, 3]


def test_colour_rule():
  gray = PIL.Image.fromarray(np.full((2, 3), 77, np.uint8), 'L')
  np.testing.assert_array_equal(folders.to_rgb(gray), np.full((2, 3, 3), 77))
  rgba = np.zeros((1, 3, 4), np.uint8)
  rgba[0, 0] = [10, 20, 30, 0]      # fully transparent: white whatever it stores
  rgba[0, 1] = [10, 20, 30, 255]    # opaque: as stored
  rgba[0, 2] = [0, 0, 0, 128]       # half transparent black over white: 127
  np.testing.assert_array_equal(folders.to_rgb(PIL.Image.fromarray(rgba, 'RGBA')),
                                [[[255, 255, 255], [10, 20, 30], [127, 127, 127]]])
  palette = PIL.Image.fromarray(np.array([[0, 1]], np.uint8), 'P')
  palette.putpalette([200, 0, 0, 0, 0, 200] + [0] * 762)
  np.testing.assert_array_equal(folders.to_rgb(palette), [[[200, 0, 0], [0, 0, 200]]])
  deep = PIL.Image.fromarray(np.array([[0, 257 * 100, 65535]], np.uint16))
  assert deep.mode == 'I;16'
  np.testing.assert_array_equal(folders.to_rgb(deep)[..., 1], [[0, 100, 255]])
  np.testing.assert_array_equal(folders.to_rgb(deep.convert('I'))[..., 1], [[0, 100, 255]])


def test_exif_orientation_is_applied():
  buf = io.BytesIO()
  exif = PIL.Image.Exif()
  exif[0x0112] = 6    # "rotate 90 degrees clockwise to display"
  PIL.Image.new('RGB', (30, 10)).save(buf, 'JPEG', exif=exif)
  assert folders.decode(buf.getvalue()).shape == (30, 10, 3)


def test_bad_files_are_skipped_and_counted_or_stop_the_run(tree):
  (tree / 'b' / '02.png').write_bytes(b'\x89PNG\r\n\x1a\n but then nothing useful')
  truncated = (tree / 'a' / 'x' / '01.jpg').read_bytes()
  (tree / 'a' / 'x' / '01.jpg').write_bytes(truncated[:len(truncated) // 2])
  skip = make_config('folder', folder=str(tree), image_size=8, num_train_examples=0,
                     on_bad_image='skip')
  with pytest.warns(UserWarning) as record:
    images = data.load_train_images(skip)
  messages = [str(w.message) for w in record]
  assert any('b/02.png' in m and 'skipped' in m for m in messages)
  assert any('a/x/01.jpg' in m for m in messages)
  assert any('2 of 6 image files' in m for m in messages)
  np.testing.assert_allclose(red(images), [0, 3, 4, 5], atol=1)

  stop = make_config('folder', folder=str(tree), image_size=8, num_train_examples=0,
                     on_bad_image='error')
  with pytest.raises(data.BadImageError, match='01.jpg'):
    data.load_train_images(stop)


def test_crop_policies(tmp_path):
  # 20x40 (HxW): left quarter black, middle half white, right quarter black.
  wide = np.zeros((20, 40, 3), np.uint8)
  wide[:, 10:30] = 255
  save(str(tmp_path / 'w.png'), PIL.Image.fromarray(wide))
  center = data.load_train_images(make_config('folder', folder=str(tmp_path), image_size=20,
                                              num_train_examples=0))
  whole = data.load_train_images(make_config('folder', folder=str(tmp_path), image_size=20,
                                             num_train_examples=0, crop='none'))
  np.testing.assert_array_equal(center[0], 255)        # the central 20x20 square only
  np.testing.assert_array_equal(whole[0, :, :4], 0)    # squeezed: the black sides remain
  np.testing.assert_array_equal(whole[0, :, 6:14], 255)


def test_missing_or_empty_folder_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match='neither a directory nor a .zip'):
    folders.list_images(str(tmp_path / 'nope'))
  with pytest.raises(FileNotFoundError, match='no .png'):
    folders.list_images(str(tmp_path))


def test_an_unidentifiable_file_is_named_not_its_memory_buffer(tree):
  (tree / 'b' / '03.png').write_bytes(b'GIF? no: plain text')
  stop = make_config('folder', folder=str(tree), image_size=8, num_train_examples=0,
                     on_bad_image='error')
  with pytest.raises(data.BadImageError) as raised:
    data.load_train_images(stop)
  message = str(raised.value)
  assert message.startswith(f'cannot decode image {tree}/b/03.png: not an image format '
                            "Pillow recognises (19 bytes starting b'GIF? no:')"), message
  assert 'BytesIO' not in message and ' at 0x' not in message


def test_replacing_a_file_changes_the_content_fingerprint(tmp_path):
  """dataset.json's content_sha256 covers what the files hold, not only their names."""
  from sparsediff_jax import data
  from tests.helpers.data_fakes import make_config
  folder = tmp_path / 'imgs'
  folder.mkdir()
  for i in range(3):
    PIL.Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f'{i}.png')
  config = make_config('folder', folder=str(folder), image_size=8, num_train_examples=3)
  first = data.describe_dataset(config)
  PIL.Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(folder / '1.png')
  second = data.describe_dataset(config)
  assert first['selection_sha256'] == second['selection_sha256']
  assert first['content_sha256'] != second['content_sha256']
