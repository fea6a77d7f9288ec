"""Inception feature-extraction throughput: our JAX port vs pytorch-fid, same machine.

Each framework runs in its own subprocess, one after the other (so they never compete
for cores), on the same uint8 batch, including preprocessing (resize to 299, scaling).
Both networks carry the seeded stand-in weights of tests/helpers/fixtures/seeded_inception.py
(speed does not depend on the values; no download needed).

    python benchmarks/inception_speed.py --torch-python /path/to/venv-with-torch/bin/python

--jax-python / --torch-python pick the interpreters (default: this one); the torch side
needs torch, torchvision and pytorch-fid. JAX runs on its default backend; PyTorch on
--torch-device (cpu by default, cuda to compare on a GPU). Prints a table of images/s and
the ratio.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "helpers" / "fixtures"


def _images(batch: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def _time(step, warmup: int, iters: int) -> float:
    """Seconds per call of step(), after `warmup` calls (compilation, allocator warm-up)."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    return (time.perf_counter() - start) / iters


def run_jax(args) -> dict:
    import jax
    from flax import nnx

    from tests.helpers.fixtures import seeded_inception as seeded

    from sparsediff_jax.metrics.fid import inception as inc
    from sparsediff_jax.metrics.fid import inception_weights as iw

    # The pytorch-fid state_dict keys and shapes recorded with the parity fixture.
    spec = json.loads(str(np.load(FIXTURES / "inception_parity.npz")["spec"]))
    model = inc.build_inception(iw.convert_state_dict(seeded.seeded_state_dict(spec)))
    graphdef, state = nnx.split(model)
    images = jax.device_put(_images(args.batch, args.size))
    step = lambda: inc.inception_features(graphdef, state, images).block_until_ready()  # noqa: E731
    seconds = _time(step, args.warmup, args.iters)
    return dict(framework=f"JAX {jax.__version__} (ours)", device=str(jax.devices()[0]),
                seconds_per_batch=seconds)


def run_torch(args) -> dict:
    import torch

    from tests.helpers.fixtures.make_inception_fixture import build_pytorch_fid_model

    torch.set_num_threads(os.cpu_count())
    torch.set_grad_enabled(False)
    device = torch.device(args.torch_device)
    model, _, _ = build_pytorch_fid_model()
    model = model.to(device)
    images = torch.from_numpy(_images(args.batch, args.size)).to(device)

    def step():
        # pytorch-fid's input convention: float NCHW in [0, 1]; the model resizes/scales.
        model(images.permute(0, 3, 1, 2).float() / 255.0)
        if device.type == "cuda":
            torch.cuda.synchronize()

    seconds = _time(step, args.warmup, args.iters)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    return dict(framework=f"PyTorch {torch.__version__} (pytorch-fid)", device=name,
                seconds_per_batch=seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="input image side before resize")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--jax-python", default=sys.executable)
    parser.add_argument("--torch-python", default=sys.executable)
    parser.add_argument("--torch-device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--worker", choices=["jax", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        result = (run_jax if args.worker == "jax" else run_torch)(args)
        print("RESULT " + json.dumps(result))
        return

    common = [f"--batch={args.batch}", f"--size={args.size}", f"--warmup={args.warmup}",
              f"--iters={args.iters}", f"--torch-device={args.torch_device}"]
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    results = []
    for worker, python in (("jax", args.jax_python), ("torch", args.torch_python)):
        out = subprocess.run([python, __file__, f"--worker={worker}", *common], env=env,
                             check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.split("RESULT ", 1)[1]))

    print(f"Inception pool3 features, batch {args.batch}, {args.size}x{args.size} uint8 -> 299x299, "
          f"{os.cpu_count()} CPU cores, mean of {args.iters} batches after {args.warmup} warm-up")
    print(f"{'implementation':<38} {'device':<24} {'s/batch':>9} {'images/s':>9}")
    for r in results:
        print(f"{r['framework']:<38} {r['device'][:24]:<24} {r['seconds_per_batch']:>9.3f} "
              f"{args.batch / r['seconds_per_batch']:>9.2f}")
    ratio = results[1]["seconds_per_batch"] / results[0]["seconds_per_batch"]
    print(f"JAX / PyTorch throughput ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
