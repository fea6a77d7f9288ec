# shellcheck shell=bash disable=SC2034  # sourced: the scripts that source it use the arrays
# Sourced by the memorization-window experiments (memorization_window.sh, dit_window.sh,
# fashion_mnist_window.sh): the launch/sweep.py --set flags they share, so that every run
# is trained, sampled and scored the same way. Changing one of these changes the resolved
# config of every run, and launch/sweep.py --results then runs it again rather than mixing
# two settings in one table.
#
# Settings (environment):
#   SAMPLER, SAMPLER_STEPS  the sampler of every scored sample (default heun, 12 steps; named
#                           explicitly, so a later default never enters a table);
#   SAMPLES                 samples scored at every scored step, same noise each time (128);
#   COMMIT=1                git-commit each kept result as soon as it is kept (0);
#   PYTHON                  the interpreter (python).
# Defines:
#   commit_flag    (--commit) with COMMIT=1, else empty;
#   SMALL_UNET     the 0.71M-parameter U-Net (channels 32, channel_mult (1, 2), no attention);
#   WINDOW_COMMON  batch, EMA, no sample grids during training, the sampler and the scored
#                  samples, locality on 1 image at 2 noise levels;
#   window_cap CAP EVERY STOP
#                  sets WINDOW_CAP: train to CAP steps, checkpoint and score every EVERY
#                  steps (the last 2 checkpoints kept), stop once STOP of the samples are
#                  memorized.
SAMPLER=${SAMPLER:-heun}
SAMPLER_STEPS=${SAMPLER_STEPS:-12}
SAMPLES=${SAMPLES:-128}
COMMIT=${COMMIT:-0}
PYTHON=${PYTHON:-python}
commit_flag=()
[ "$COMMIT" = 1 ] && commit_flag=(--commit)
SMALL_UNET=(--set model.channels=32 --set 'model.channel_mult=(1,2)'
            --set 'model.attn_resolutions=()')
WINDOW_COMMON=(--set training.batch_size=16 --set 'optim.ema_decays=(0.995,)'
               --set training.sample_every=0
               --set sampling.sampler="$SAMPLER" --set sampling.num_steps="$SAMPLER_STEPS"
               --set sampling.time_steps=default --set sampling.seed=0
               --set sampling.ema_index=0 --set sampling.grid_size=4
               --set research.num_samples="$SAMPLES" --set research.batch_size="$SAMPLES"
               --set research.locality_images=1 --set research.locality_times=2)

window_cap() {
  WINDOW_CAP=(--set training.num_steps="$1" --set training.checkpoint_every="$2"
              --set training.keep_checkpoints=2 --set research.window_every="$2"
              --set research.window_stop="$3")
}
