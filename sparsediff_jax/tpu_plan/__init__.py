"""Planning a TPU slice without one: --mode=plan (modes/plan.py) and
benchmarks/tpu_plan_table.py.

topology.py   slice names -> chips, torus shape, host VMs; each generation's chip figures
              (pure, no JAX).
roofline.py   the step-time bound from FLOPs, HBM bytes and interconnect bytes (pure).
collectives.py  the collectives of a compiled program's HLO text, and their traffic (pure).
compile.py    libtpu: the slice's compile-only devices, the training mesh over them, and the
              compiled train step, sampler and network call, measured.
plan.py       one plan (a JSON-able dict) of a config on a slice, its console lines, its
              refusal when something does not fit, and the batch/fsdp search.
"""
