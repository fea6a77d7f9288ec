"""Sparsely Supervised Diffusion in JAX/Flax.

LAYERS is the package's dependency rule: a module may import its own top-level package (or
module) and anything in a lower layer, never a higher one. tests/test_layers.py checks every
module's imports against it and names the file and the import that runs up.
"""

__version__ = "0.1.0"

LAYERS = (   # bottom first; the names under sparsediff_jax/
    ('errors', 'images'),                                    # error types, the image layout
    ('entry_checks', 'registry', 'config_base', 'validation'),   # config fields, plug-ins
    ('masking', 'formulations', 'samplers', 'multistep', 'models'),   # the maths, networks
    ('runtime', 'console'),         # what keeps a run alive, what a person reads
    ('train_state', 'train_step', 'generate'),   # the state and its restore, the step, sampling
    ('metrics', 'tpu_plan'),        # measures of arrays of images; TPU slices costed
    ('data',),                      # readers and datasets (each with its metrics)
    ('scoring',),                   # metrics of a run: generates, loads data, restores
    ('sweeps',),                    # tables over many runs
    ('modes',),                     # one module per --mode
    ('main',),                      # the command line
)
