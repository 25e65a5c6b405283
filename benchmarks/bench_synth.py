#!/usr/bin/env python
"""Throughput of the chest X-ray simulator on ONE CPU core (target: >= 200 images/s at 224x224).

    OMP_NUM_THREADS=1 python benchmarks/bench_synth.py [--n 1000] [--size 224] [--patients by_patient]

Prints images/s by wall clock and by process CPU time (the latter is robust to other programs
sharing the machine), for normal-only images and for the default mix (about half abnormal).
``--patients NAME`` draws the films from a preset of ``PATIENT_SPLITS`` (its training patients; the
five patient assets are loaded outside the timing). Not a timed test: run it by hand when the simulator changes.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="images per measurement")
    ap.add_argument("--size", type=int, default=224, help="image side in pixels")
    ap.add_argument("--patients", default=None, help="a PATIENT_SPLITS preset (e.g. by_patient); default: the single asset")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from mlcak_lib.synth import SynthConfig, SynthCXR

    kw = {"image_size": args.size, "patients": args.patients}
    print(f"patients: {args.patients or 'single default asset'}")
    for label, cfg in [
        ("normal only", SynthConfig(abnormal_fraction=0.0, **kw)),
        ("default mix (~50% abnormal)", SynthConfig(**kw)),
        ("VinDr-calibrated (29% abnormal)", SynthConfig.vindr_calibrated(**kw)),
    ]:
        sim = SynthCXR(cfg)
        for i in range(30):  # load the asset(s) outside the timing
            sim.generate(i)
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(args.n):
            sim.generate(i, "train", 0, keep_masks=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"{label:34s} {args.n / wall:7.1f} images/s (wall)   {args.n / cpu:7.1f} images/s (CPU time)  "
              f"at {args.size}x{args.size}, 1 thread")


if __name__ == "__main__":
    main()
