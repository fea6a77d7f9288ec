"""Inception port: parity with pytorch-fid, preprocessing, torch-free weight reading.

The parity fixture (tests/helpers/fixtures/inception_parity.npz) was produced by
tests/helpers/fixtures/make_inception_fixture.py running the real pytorch-fid on seeded weights;
here the same weights are regenerated with NumPy, so neither torch nor the network is
needed.
"""

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sparsediff_jax.metrics.fid import fid
from sparsediff_jax.metrics.fid import inception as inc
from sparsediff_jax.metrics.fid import inception_weights as iw
from tests.helpers.fixtures import seeded_inception as seeded

FIXTURES = Path(__file__).parents[2] / "helpers" / "fixtures"
REPO = Path(__file__).parents[3]


@pytest.fixture(scope="module")
def parity():
    """Our port on the fixture's seeded weights and images (one network compile, batch 8)."""
    fx = dict(np.load(FIXTURES / "inception_parity.npz"))
    torch_state = seeded.seeded_state_dict(json.loads(str(fx["spec"])))
    images = seeded.seeded_images()
    # If NumPy's generator streams ever change, the regenerated inputs differ from what
    # pytorch-fid saw: say so instead of reporting a bogus parity failure.
    assert seeded.digest(torch_state.values()) == str(fx["weights_digest"]), "seeded weights changed"
    assert seeded.digest(images) == str(fx["images_digest"]), "seeded images changed"
    model = inc.build_inception(iw.convert_state_dict(torch_state))
    graphdef, state = nnx.split(model)
    x = jnp.concatenate([inc.preprocess(jnp.asarray(group)) for group in images])
    pool3, logits = inc._network(graphdef, state, x, True)
    return dict(fx=fx, graphdef=graphdef, state=state, images=images,
                pool3=np.asarray(pool3), logits=np.asarray(logits))


def test_pool3_matches_pytorch_fid(parity):
    ours, ref = parity["pool3"], parity["fx"]["pool3"]
    assert ours.shape == ref.shape == (8, 2048)
    assert np.abs(ref).mean() > 0.5  # the seeded net keeps activations O(1)
    assert np.abs(ours - ref).max() < 1e-4


def test_logits_match_pytorch_fid(parity):
    assert np.abs(parity["logits"] - parity["fx"]["logits"]).max() < 1e-4


@pytest.mark.slow   # the square root of a 2048 x 2048 matrix
def test_fid_matches_pytorch_fid(parity):
    half = len(parity["pool3"]) // 2
    a, b = fid.feature_stats(parity["pool3"][:half]), fid.feature_stats(parity["pool3"][half:])
    ours = fid.frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    assert ours == pytest.approx(float(parity["fx"]["fid"]), rel=1e-4)


def test_inception_features_entry_point(parity):
    """The public function (quantize -> preprocess -> network) on float images."""
    group = parity["images"][1]  # 299x299: float input quantizes back to the same uint8
    feats = inc.inception_features(parity["graphdef"], parity["state"],
                                   group.astype(np.float32) / 255.0)
    assert np.abs(np.asarray(feats) - parity["fx"]["pool3"][4:6]).max() < 1e-4


def test_pytorch_resize_matches_torch_interpolate():
    fx = np.load(FIXTURES / "inception_parity.npz")
    out = inc._resize_pytorch(jnp.asarray(fx["resize_input"]), fx["resize_output"].shape[1:3])
    np.testing.assert_allclose(np.asarray(out), fx["resize_output"], atol=1e-6)


def _legacy_bilinear_by_hand(img, out_h, out_w):
    """TF1 resize_bilinear(align_corners=False, half_pixel_centers=False), loop by loop."""
    def taps(i, n_in, n_out):
        src = i * n_in / n_out  # legacy: no half-pixel offset
        lo = int(np.floor(src))
        return lo, min(lo + 1, n_in - 1), src - lo

    out = np.zeros((out_h, out_w) + img.shape[2:])
    for i in range(out_h):
        y0, y1, fy = taps(i, img.shape[0], out_h)
        for j in range(out_w):
            x0, x1, fx = taps(j, img.shape[1], out_w)
            top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
            bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
            out[i, j] = top * (1 - fy) + bottom * fy
    return out


def test_tf_legacy_resize_matches_hand_computed():
    img = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3) * 7.0
    for out_h, out_w in ((4, 5), (1, 2), (7, 3)):
        ours = np.asarray(inc._resize_tf_legacy(jnp.asarray(img[None]), (out_h, out_w)))[0]
        np.testing.assert_allclose(ours, _legacy_bilinear_by_hand(img, out_h, out_w), atol=1e-4)
    # Legacy sampling is NOT half-pixel: upsampling 2 -> 4 starts exactly on pixel 0.
    two = jnp.asarray(np.array([0.0, 8.0], np.float32).reshape(1, 2, 1, 1))
    col = np.asarray(inc._resize_tf_legacy(two, (4, 1)))[0, :, 0, 0]
    np.testing.assert_allclose(col, [0.0, 4.0, 8.0, 8.0])


def test_preprocess_modes_and_quantization():
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (1, 299, 299, 3), dtype=np.uint8)
    at_size = u8.astype(np.float32)
    # At 299x299 both resizes are the identity, leaving only the value mapping.
    np.testing.assert_allclose(np.asarray(inc.preprocess(u8, "pytorch")), at_size / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(inc.preprocess(u8, "tf")), (at_size - 128.0) / 128.0, atol=1e-6)
    # Floats are quantized as a saved PNG would be: round half up, clipped to [0, 1].
    floats = np.array([0.0, 0.5 / 255, 0.49 / 255, 1.2, -0.1, 254.5 / 255], np.float32)
    np.testing.assert_array_equal(np.asarray(inc.quantize_uint8(floats)), [0, 1, 0, 255, 0, 255])
    np.testing.assert_array_equal(np.asarray(inc.quantize_uint8(u8)), u8)
    with pytest.raises(ValueError, match="unknown preprocessing"):
        inc.preprocess(u8, "bogus")


# ----------------------------------------------------------------------------------------
# Weights: reading torch files without torch, conversion, hashing, caching.


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_reader_on_torch_saved_file(fmt):
    got = iw.read_torch_state_dict(FIXTURES / f"tiny_state_dict_{fmt}.pth")
    want = np.load(FIXTURES / "tiny_state_dict.npz")
    assert sorted(got) == sorted(want.files)
    for name in want.files:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape, name
        np.testing.assert_array_equal(got[name], want[name])
    assert got["bn.num_batches_tracked"].shape == () and got["bn.num_batches_tracked"] == 7


def test_convert_state_dict_layout():
    sd = iw.read_torch_state_dict(FIXTURES / "tiny_state_dict_zip.pth")
    params = iw.convert_state_dict(sd)
    assert set(params) == {"conv.kernel", "bn.var", "fc.kernel", "fc.bias"}  # counter dropped
    weight, kernel = sd["conv.weight"], params["conv.kernel"]  # OIHW (4, 3, 3, 2) -> HWIO
    assert kernel.shape == (3, 2, 3, 4)
    o, i, h, w = 3, 1, 2, 1
    assert kernel[h, w, i, o] == weight[o, i, h, w]
    np.testing.assert_array_equal(params["fc.kernel"], sd["fc.weight"].T)
    np.testing.assert_array_equal(params["bn.var"], sd["bn.running_var"])
    with pytest.raises(iw.InceptionWeightsError, match="unexpected"):
        iw.convert_state_dict({"conv.bias": np.zeros(3)})


def _copy(src: Path, dst: Path, nbytes=None) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data if nbytes is None else data[:nbytes])
    return dst


def test_hash_mismatch_is_a_clear_error(tmp_path):
    fake = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    fake.write_bytes(b"not the weights")
    actual = hashlib.sha256(b"not the weights").hexdigest()
    with pytest.raises(iw.InceptionWeightsError) as err:
        iw.load_params(fake, cache=tmp_path / "cache")
    message = str(err.value)
    assert str(fake) in message and iw.PT_INCEPTION_SHA256 in message and actual in message
    assert "delete it" in message
    assert not (tmp_path / "cache").exists()  # nothing converted from a bad file


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_truncated_file_is_a_clear_error(tmp_path, fmt):
    src = FIXTURES / f"tiny_state_dict_{fmt}.pth"
    cut = _copy(src, tmp_path / "cut.pth", src.stat().st_size - 40)
    with pytest.raises(iw.InceptionWeightsError, match="cut.pth"):
        iw.read_torch_state_dict(cut)
    with pytest.raises(iw.InceptionWeightsError, match="cut.pth"):
        iw.load_params(cut, cache=tmp_path, expected_sha256=None)


def test_reader_refuses_arbitrary_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())  # harmless, but any global call must be refused

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:  # legacy layout: magic, protocol, sys_info, object
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}, {"w": Evil()}):
            pickle.dump(obj, f, protocol=2)
    with pytest.raises(iw.InceptionWeightsError, match="refusing to load global posix.getcwd"):
        iw.read_torch_state_dict(path)


def test_load_params_converts_once_and_caches(tmp_path, monkeypatch):
    src = FIXTURES / "tiny_state_dict_legacy.pth"
    sha = iw.sha256_file(src)
    monkeypatch.setenv("SPARSEDIFF_CACHE", str(tmp_path / "env_cache"))
    assert iw.cache_dir() == tmp_path / "env_cache"
    params, got_sha = iw.load_params(src, expected_sha256=sha)
    assert got_sha == sha and params["fc.kernel"].shape == (6, 5)
    assert len(list((tmp_path / "env_cache").glob("*.npz"))) == 1

    def fail(path):
        raise AssertionError("the converted cache should have been used")

    monkeypatch.setattr(iw, "read_torch_state_dict", fail)
    again, _ = iw.load_params(src, expected_sha256=sha)
    assert again.keys() == params.keys()
    np.testing.assert_array_equal(again["conv.kernel"], params["conv.kernel"])


def test_download_verifies_before_keeping(tmp_path):
    src = FIXTURES / "tiny_state_dict_zip.pth"
    url = src.resolve().as_uri()  # file:// goes through the same urllib code path
    with pytest.raises(iw.InceptionWeightsError, match="SHA-256 mismatch"):
        iw.download_weights(tmp_path, url=url)  # the real expected hash: must not match
    assert list(tmp_path.iterdir()) == []  # no partial or unverified file left behind
    path = iw.download_weights(tmp_path, url=url, expected_sha256=iw.sha256_file(src))
    assert path.read_bytes() == src.read_bytes()


def test_a_failed_download_names_the_config_field_for_a_local_file(tmp_path):
    """Offline (here: a file:// URL that does not exist), the error says how to use a copy
    fetched by hand: config.eval.inception_weights."""
    url = (tmp_path / "absent" / "pt_inception.pth").as_uri()
    with pytest.raises(iw.InceptionWeightsError,
                       match=r"could not download .*; download it by hand and pass its path as "
                             r"--config\.eval\.inception_weights=PATH"):
        iw.download_weights(tmp_path / "cache", url=url)
    assert not any((tmp_path / "cache").iterdir())


def test_build_inception_rejects_missing_parameters(parity):
    params = {".".join(map(str, k)): np.asarray(v)
              for k, v in nnx.to_flat_state(parity["state"])}
    del params["Mixed_7c.branch_pool.bn.var"]
    with pytest.raises(ValueError, match="Mixed_7c.branch_pool.bn.var"):
        inc.build_inception(params)


def test_package_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"  # any 'import torch' now fails
            "import sparsediff_jax.metrics.fid.inception, sparsediff_jax.metrics.fid.fid\n"
            "assert sys.modules['torch'] is None\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env, timeout=120)


def test_hash_mismatch_names_the_config_field_that_accepts_own_weights(tmp_path):
    fake = tmp_path / "weights.pth"
    fake.write_bytes(b"other weights")
    with pytest.raises(iw.InceptionWeightsError) as err:
        iw.verify_sha256(fake, iw.PT_INCEPTION_SHA256)
    assert "--config.eval.inception_sha256=''" in str(err.value)
    assert not str(err.value).rstrip(".").endswith("expected_sha256=None to use your own "
                                                   "weights knowingly")
