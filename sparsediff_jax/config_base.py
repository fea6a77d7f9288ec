"""The base configuration: every field, its meaning and its default.

`get_config()` returns the embedded default run (the procedurally generated `shapes`
dataset, small enough to train on a laptop CPU in minutes). The files in `configs/`
start from it and override what their dataset needs; any field can be overridden on the
command line, e.g. `--config.mask.ratio=0.9`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()

  # ---- data --------------------------------------------------------------------------
  c.data = d = ml_collections.ConfigDict()
  d.name = 'shapes'             # dataset: 'shapes' (embedded, no download); 'digits' (the
                                # UCI handwritten digits shipped with scikit-learn, real,
                                # no download); 'fashion_mnist' and 'mnist' (28x28 IDX
                                # files, see data.source; sparsediff_jax/data/fashion_mnist/);
                                # TFDS 'celeba', 'cifar10', 'imagenet32',
                                # 'imagenet64', 'lsun_bedroom'; 'folder' (images of
                                # data.folder). Every dataset is RGB. See sparsediff_jax/data.
  d.image_size = 32             # height = width of training images, pixels.
  d.num_train_examples = 4096   # size of the training set: the first N examples of the source
                                # in its canonical order (TFDS: stored order of the train
                                # split; folder: sorted relative paths), the same on every
                                # run and host whatever the seed (0 = all of them).
  d.random_flip = False         # random horizontal flips (shapes are mirror-symmetric anyway).
  d.data_dir = ''               # TFDS data_dir (local path or gs:// bucket); '' = TFDS default.
                                # fashion_mnist/mnist with source='files': the folder of the
                                # four IDX files; '' = /usr/share/datasets/fashion-mnist (the
                                # Debian package dataset-fashion-mnist) or .../mnist.
  d.source = 'files'            # fashion_mnist/mnist only: 'files' reads the IDX files of
                                # data_dir; 'tfds' reads TFDS's copy (prepared in data_dir, or
                                # downloaded with download=True).
  d.class_balanced = False      # fashion_mnist/mnist: True takes num_train_examples // 10
                                # images of each class (first ones in stored order) instead
                                # of the first num_train_examples.
  d.download = False            # TFDS: download and prepare a dataset missing from data_dir;
                                # False raises DatasetUnavailableError saying how to prepare it.
  d.manual_dir = ''             # TFDS manual download folder, used with download=True (CelebA's
                                # files when Google Drive refuses them).
  d.folder = ''                 # name='folder': a directory (searched recursively) or a .zip
                                # of .png/.jpg/.jpeg images; grayscale/palette/RGBA become RGB
                                # (alpha over white), see sparsediff_jax/data/folders.py.
  d.crop = 'center'             # 'center': central square crop, then resize to image_size
                                # (antialiased bilinear; smaller images are enlarged the same
                                # way); 'none': resize the whole image (aspect ratio not kept).
  d.crop_size = 0               # side of the central crop, pixels, clamped to the shorter side;
                                # 0 = the dataset's default: 140 for celeba (the published
                                # CelebA-64 recipe), the shorter side otherwise.
  d.on_bad_image = 'error'      # folder images that fail to decode: 'error' stops and names the
                                # file; 'skip' names each in a warning, drops it and reports the
                                # count.
  d.per_process_read = False    # True: each host loads only its 1/process_count part of the
                                # subset (memory and reading divided; resume needs the same
                                # process count); False: every host loads all of it.
  d.shapes_pairs = 2            # shapes dataset: mirrored object pairs per image, 1 to 3
                                # (each image holds exactly 2 * shapes_pairs objects).
  d.shapes_seed = 0             # shapes dataset: seed that defines the dataset itself.

  # ---- diffusion formulation -----------------------------------------------------------
  c.diffusion = f = ml_collections.ConfigDict()
  f.formulation = 'flow_matching'  # 'flow_matching' (velocity; the paper's baseline),
                                   # 'ddpm_eps' (epsilon prediction) or 'edm'.
  f.time_sampling = 'uniform'      # flow matching training times: 'uniform' or 'logit_normal'.
  f.ddpm_schedule = 'linear'       # ddpm_eps noise schedule: 'linear' or 'cosine'.
  f.edm_sigma_data = 0.5           # edm: standard deviation of the data.
  f.edm_p_mean = -1.2              # edm: mean of log sigma during training.
  f.edm_p_std = 1.2                # edm: std of log sigma during training.

  # ---- the paper: sparse supervision -------------------------------------------------
  c.mask = m = ml_collections.ConfigDict()
  m.strategy = 'iid'            # how the keep-mask is drawn (sparsediff_jax/masking.py):
                                # 'iid' (the paper): every element kept with probability
                                # 1 - ratio; 'noise_schedule' (not in the paper): the drop
                                # ratio moves linearly with the example's noise level, from
                                # ratio_at_t0 (clean data) to ratio_at_t1 (pure noise).
  m.ratio = 0.9                 # eta: fraction of pixels dropped from the loss, in [0, 1)
                                # (strategy 'iid').
  m.ratio_at_t0 = 0.0           # strategy 'noise_schedule': drop ratio at noise level 0.
  m.ratio_at_t1 = 0.9           # strategy 'noise_schedule': drop ratio at noise level 1.
                                # The noise level is sigma / (1 + sigma), sigma the
                                # noise-to-signal ratio (flow matching: t itself).
  m.per_channel = False         # True: each channel of a pixel is kept/dropped on its own;
                                # False: a pixel's channels share one draw.
  m.patch_size = 1              # side of the square pixel patches that are kept/dropped together.
  m.normalize = 'kept'          # 'kept': mean over supervised elements (gradient scale does not
                                # depend on eta); 'all': mean over all elements, whose
                                # expectation is (1 - eta) x the dense loss.

  # ---- model -------------------------------------------------------------------------
  c.model = mo = ml_collections.ConfigDict()
  mo.name = 'unet'              # network: 'unet' (DDPM++/ADM-style convolutional U-Net) or
                                # 'dit' (Diffusion Transformer, sparsediff_jax/models/dit.py).
  mo.channels = 16              # channels at the first resolution.
  mo.channel_mult = (1, 2, 2)   # channel multiplier per resolution level; the image is halved
                                # len(channel_mult) - 1 times, so image_size must divide by that.
  mo.num_res_blocks = 1         # residual blocks per resolution level.
  mo.attn_resolutions = (8,)    # feature-map sizes (pixels) that get self-attention.
  mo.num_heads = 1              # attention heads (dit: must divide model.hidden_size).
  mo.patch_size = 2             # dit: side of the square pixel patches that become tokens
                                # ((image_size / patch_size)**2 tokens); must divide
                                # data.image_size. mask.patch_size = patch_size masks whole
                                # tokens.
  mo.hidden_size = 64           # dit: token width; divisible by 4 (2-D sin-cos positions).
  mo.depth = 4                  # dit: transformer blocks.
  mo.mlp_ratio = 4.0            # dit: MLP width / hidden_size in every block.
  mo.dropout = 0.0              # dropout rate inside residual blocks (a baseline to compare with
                                # masking).
  mo.dtype = 'float32'          # compute dtype: 'float32' or 'bfloat16' (parameters stay float32).
  mo.remat = False              # recompute each residual block in the backward pass instead of
                                # storing its activations: less memory for large models and
                                # batches, about a third more compute per step.

  # ---- optimisation and the training loop --------------------------------------------
  c.training = t = ml_collections.ConfigDict()
  t.num_steps = 1000            # optimiser steps in the whole run.
  t.batch_size = 16             # global batch (all devices and hosts together).
  t.seed = 0                    # seed of parameters, noise, masks and data order, in
                                # [0, 2**31 - 1].
  t.log_every = 50              # steps between console/TensorBoard metric lines.
  t.sample_every = 250          # steps between sample grids (0 = only at the end).
  t.checkpoint_every = 250      # steps between checkpoints (0 = only at the end).
  t.keep_checkpoints = 3        # checkpoints kept on disk.
  t.steps_per_call = 1          # optimiser steps per compiled call (lax.scan over stacked
                                # batches): fewer dispatches and host round trips for small,
                                # fast steps. num_steps, log_every, sample_every,
                                # checkpoint_every and eval.train_fid_every must be multiples.
  t.unroll_steps = True         # steps_per_call > 1: lay the steps out one after another
                                # (False: a rolled loop, compiles as fast as one step). On CPU
                                # a rolled loop ran 2.6x slower per step than one step per call
                                # (benchmarks/RESULTS.md); unrolled it was faster.
  t.on_nonfinite = 'skip'       # a step whose loss or gradient is not finite (NaN/inf):
                                # 'skip' leaves parameters, EMA and optimiser state
                                # as they were (the batch is consumed; counted in the metric
                                # skipped_steps); 'stop' ends the run with an error naming the
                                # step, the newest checkpoint being the last good state. See
                                # sparsediff_jax/runtime/nonfinite.py.
  t.nonfinite_patience = 100    # 'skip': this many skipped steps in a row end the run as 'stop'
                                # does (0 = never).
  t.compilation_cache = 'default'  # directory of JAX's persistent compilation cache: reruns
                                # load compiled programs instead of compiling them again.
                                # 'default' = $SPARSEDIFF_CACHE/xla, else
                                # ~/.cache/sparsediff_jax/xla; '' = off. See
                                # sparsediff_jax/runtime/compile_cache.py.
  t.resume_may_change = ''      # comma-separated config fields (a section as 'optim.') that this
                                # resume may change besides those always allowed
                                # (run_dir.MAY_CHANGE), e.g. 'optim.learning_rate' to continue
                                # a diverged run at a lower rate. Shapes must still match.

  c.optim = o = ml_collections.ConfigDict()
  o.learning_rate = 1e-3        # peak learning rate of AdamW.
  o.warmup_steps = 100          # linear warm-up steps from 0 to the peak.
  o.schedule = 'constant'       # after warm-up: 'constant' or 'cosine' (decay to 0 at num_steps).
  o.beta1 = 0.9                 # AdamW beta1.
  o.beta2 = 0.999               # AdamW beta2.
  o.eps = 1e-8                  # AdamW epsilon.
  o.weight_decay = 0.0          # AdamW decoupled weight decay.
  o.grad_clip = 1.0             # global gradient-norm clip (0 = off).
  o.ema_decays = (0.999,)       # decays of the exponential moving averages of the parameters
                                # (warmed up as min(decay, (1 + step) / (10 + step)));
                                # the first one is used for sample grids.

  # ---- devices ---------------------------------------------------------------------
  c.sharding = sh = ml_collections.ConfigDict()
  sh.fsdp = 1                   # size of the mesh's `fsdp` axis (the rest is `data`): parameters,
                                # EMA and optimiser state are split over this many devices along
                                # their largest divisible dimension (FSDP / ZeRO-3), the batch
                                # over all devices. 1 = plain data parallelism (every device holds
                                # the whole state). Must divide the number of devices.

  # ---- sampling (grids during training, --mode=sample, --mode=eval, --mode=research) --
  c.sampling = s = ml_collections.ConfigDict()
  # Default: DPM-Solver++(2M) on the formulation's own grid (flow matching: uniform in t),
  # 10 steps = 10 NFE, from the curve in docs/results/sampler_nfe (benchmarks/sampler_nfe.py,
  # digits dense and mask 0.9 at 1500 steps, shapes): within 5% of the 256-NFE metric from
  # 8 NFE on every model (3M: 12 on mask 0.9; Heun: 11); 10 keeps a margin over the FD noise
  # of 64 samples. The default before: 3M, 10 steps; before that Heun, 18 steps, 35 NFE.
  # Experiment scripts name theirs.
  s.sampler = 'dpmpp_2m'        # 'euler', 'heun': ODE solvers for every formulation;
                                # 'dpmpp_2m', 'dpmpp_3m': DPM-Solver++ multistep (second /
                                # third order, one network call per step), every formulation;
                                # 'ddim' (deterministic) and 'ancestral' (DDPM, stochastic):
                                # ddpm_eps only; 'churn': EDM's stochastic sampler, edm only.
  s.num_steps = 10              # solver steps. NFE per image: euler/ddim/ancestral/dpmpp_*
                                # num_steps, heun/churn 2 * num_steps - 1; +1 for ddpm_eps (a
                                # final denoising call). Every mode logs and records the NFE.
  s.time_steps = 'default'      # the time grid: 'default': the formulation's own (uniform in
                                # t; edm: Karras rho grid); 'uniform': uniform in t (flow
                                # matching, ddpm_eps; edm is refused); 'edm': Karras et al.'s,
                                # uniform in sigma**(1/rho), for every formulation (sigma =
                                # noise-to-signal ratio; ddpm_eps keeps it inside its
                                # schedule); 'logsnr': uniform in log sigma (DPM-Solver's).
  s.rho = 7.0                   # time_steps='edm': the grid's exponent (larger: more steps
                                # near the data end).
  s.sigma_min = 0.002           # time_steps='edm'/'logsnr': the smallest noise-to-signal
                                # ratio visited.
  s.sigma_max = 80.0            # time_steps='edm'/'logsnr': the largest (the start of
                                # sampling).
  s.s_churn = 40.0              # churn: total stochasticity; each step in [s_min, s_max]
                                # raises sigma by min(s_churn / num_steps, sqrt(2) - 1).
  s.s_min = 0.05                # churn: smallest sigma that gets fresh noise.
  s.s_max = 50.0                # churn: largest sigma that gets fresh noise.
  s.s_noise = 1.003             # churn: scale of the fresh noise (slightly > 1 offsets the
                                # denoiser's loss of detail); EDM's ImageNet-64 settings.
  s.grid_size = 8               # the grid is grid_size x grid_size images.
  s.seed = 0                    # sample i's noise (initial and injected) comes from (seed, i).
  s.ema_index = 0               # parameters of --mode=sample/eval/research and the training
                                # FID: index into optim.ema_decays; -1 = the raw (non-EMA)
                                # parameters.
  s.num_samples = 0             # --mode=sample: images to generate (0 = one grid).
  s.save_npz = False            # --mode=sample/eval: also save every image as uint8 in an .npz
                                # next to the grid (50k 64x64 images = 615 MB).

  # ---- research metrics (--mode=research, sparsediff_jax/modes/research.py) -------
  c.research = r = ml_collections.ConfigDict()
  r.num_samples = 512           # generated images scored for consistency and memorization
                                # (sample i uses noise (sampling.seed, i), as in the grids).
  r.batch_size = 64             # images generated per call (divisible by the device count).
  r.locality_images = 4         # training images whose noisy versions the sensitivity of the
                                # denoiser is averaged over.
  r.locality_times = 4          # noise levels of the locality measure: the first N times of
                                # the sampler's grid of N steps (noise end first).
  r.memorization_grid = 8       # most memorized samples shown in research/memorization.png.
  r.trajectory = False          # also score EVERY checkpoint on disk (memorization on the same
                                # num_samples noise, the dataset's metrics, the logged losses)
                                # into research/trajectory.{json,png}, and report
                                # memorization_onset_step. Keep the checkpoints with
                                # training.keep_checkpoints / checkpoint_every.
  r.allow_other_data = False    # score even when the training data no longer matches
                                # WORKDIR/dataset.json (which examples or their contents
                                # changed since training); False refuses (exit 2).
  r.window_every = 0            # steps between scorings WHILE training (0 = off): num_samples
                                # samples' memorization and dataset metrics into
                                # research/window_trajectory.json, from which --mode=research
                                # reports tau_gen, tau_mem and the memorization window
                                # (sparsediff_jax/scoring/window_scoring.py, metrics/window.py).
                                # A multiple of training.steps_per_call, <= num_steps.
  r.window_stop = 0.5           # window_every > 0: the run stops (checkpointed, finished) once
                                # this fraction of its samples is memorized; in [0, 1], 0 =
                                # train to training.num_steps (the cap) regardless.
  r.window_cap_factor = 0.0     # window_every > 0 and > 0 here: a cap per run instead: it
                                # stops once its tau_gen (the dataset's headline target of
                                # metrics/window.py) AND window_stop are reached, or at the
                                # first scored step >= this x its own tau_gen; num_steps
                                # then bounds only runs that never reach quality. 0 = off.

  # ---- evaluation: --mode=fid_stats, --mode=eval, FID during training ---------------------
  # See docs/evaluation.md. Inception is pytorch-fid's network (our JAX port).
  c.eval = e = ml_collections.ConfigDict()
  e.num_samples = 50_000        # generated images per --mode=eval (50k is the FID convention;
                                # fewer gives a biased, larger FID).
  e.batch_size = 256            # global batch (all devices and hosts) of generation (also in
                                # --mode=sample) and of Inception features; must divide over
                                # the devices.
  e.reference_stats = ''        # reference statistics .npz written by --mode=fid_stats and
                                # read by --mode=eval; '' = WORKDIR/fid_stats/
                                # <data.name>_<image_size>px_<preprocessing>.npz.
  e.reference_features = 10_000 # real features kept in the reference .npz (a seeded random
                                # subset) for precision/recall and KID; those use as many
                                # generated features (the first ones). 0 = none (no P/R, KID).
  e.preprocessing = 'pytorch'   # Inception input: 'pytorch' (pytorch-fid: bilinear resize,
                                # 2x - 1) or 'tf' (the original TF FID graph's legacy resize).
  e.inception_weights = ''      # pytorch-fid's pt_inception-2015-12-05-6726825d.pth; '' =
                                # download once into $SPARSEDIFF_CACHE (default
                                # ~/.cache/sparsediff_jax), where the converted weights are
                                # cached too.
  e.inception_sha256 = 'pytorch-fid'  # SHA-256 the weights file must have: 'pytorch-fid' = the
                                # published file's; '' = accept any file (own weights; its hash
                                # is still recorded and compared); or a hex digest.
  e.memorization_samples = 10_000  # --mode=eval: the first N samples are compared with every
                                # training image, in pixel and Inception space (nearest and
                                # second-nearest; memorized when d1/d2 < 1/3), and on shapes
                                # scored for global consistency. Costs one Inception pass over
                                # the training images. 0 = skip.
  e.train_fid_every = 0         # training steps between small-sample FIDs (0 = never); needs
                                # reference statistics (--mode=fid_stats) first.
  e.train_fid_samples = 1000    # samples of the training FID, logged as fid_<n>: a biased
                                # small-sample estimate, comparable only to itself.

  # ---- --mode=plan: compiling for a TPU slice on this machine (docs/launch.md) ----------
  c.plan = p = ml_collections.ConfigDict()
  p.sampler = True              # also compile the sampler (its memory per chip) and one network
                                # call (its FLOPs and bytes, times the NFE: the sampling time).
  p.num_samples = 50_000        # samples whose generation time the plan bounds.
  p.find_batch = False          # also search, by compiling the train step again (slow), the
                                # largest per-chip batch that fits at sharding.fsdp and the
                                # smallest sharding.fsdp that fits at training.batch_size.
  p.max_batch_per_chip = 1024   # find_batch: the largest per-chip batch tried.
  return c
