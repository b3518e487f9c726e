"""Check the package's GPU plumbing on a CUDA machine (issue 18), in about a minute.

    python3 benchmarks/gpu_check.py [--out gpu_check.md]

On a machine without CUDA it prints "no CUDA: nothing to check" and exits 0. With CUDA it
checks, on planted data from :mod:`cfcourse.data.synthetic` (no download):

1. ``cfcourse.env``: the scale and the device it picks with and without ``CFCOURSE_SCALE=ci``;
2. the loaders (only when fastai is importable; the device kit in ``shared/gpu`` has none
   until its wheelhouse is installed): the device ``collab_dataloaders`` and
   ``tensor_dataloaders`` pick at ci and gpu scale, that a ``device=`` passed wins, and one
   epoch of a fastai ``Learner`` on CUDA through ``cfcourse.fastai_glue``;
3. ``cfcourse.fit`` for one epoch on CUDA (``dot_bias`` and ``nn``), then ``predict``,
   ``recommend``, ``similar_items``, ``save`` and ``load`` (to CUDA and to the CPU);
4. ``cfcourse.train.fit_plain`` on CUDA, and its refusal of an out-of-range position
   before the GPU sees it (a device-side assert would end the CUDA context);
5. ``cfcourse.distributed``: a one-rank NCCL DDP run under torchrun, and the refusals of a
   bad launch (more processes than GPUs; NCCL without torchrun).

It prints one line per check and a summary, and exits 1 when a check failed.
``--dry-run-on-cpu`` runs the same checks on the CPU with gloo, to test this script itself.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS: list[tuple[str, bool, str]] = []


def check(name: str):
    """Run the decorated function now; record (name, passed, detail or error)."""

    def run(fn):
        start = time.perf_counter()
        try:
            detail = fn() or ""
            RESULTS.append((name, True, f"{detail} [{time.perf_counter() - start:.1f} s]"))
        except Exception as err:  # a failed check is reported, the others still run
            tail = traceback.format_exc().strip().splitlines()[-3:]
            RESULTS.append((name, False, f"{type(err).__name__}: {err} | " + " / ".join(tail)))
        ok, text = RESULTS[-1][1], RESULTS[-1][2]
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {text}", flush=True)
        return fn

    return run


@contextmanager
def scale_set(value: str | None):
    """CFCOURSE_SCALE set to ``value`` (None: unset) for the block."""
    old = os.environ.get("CFCOURSE_SCALE")
    if value is None:
        os.environ.pop("CFCOURSE_SCALE", None)
    else:
        os.environ["CFCOURSE_SCALE"] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CFCOURSE_SCALE", None)
        else:
            os.environ["CFCOURSE_SCALE"] = old


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="also write the report here (Markdown)")
    parser.add_argument("--dry-run-on-cpu", action="store_true",
                        help="run the checks on the CPU with gloo (tests this script)")
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd
    import torch

    real = torch.cuda.is_available()
    if not real and not args.dry_run_on_cpu:
        print("no CUDA: nothing to check")
        return 0
    dev = torch.device("cuda" if real else "cpu")
    backend = "nccl" if real else "gloo"
    gpu_scale = "gpu" if real else "cpu"  # the dry run avoids gpu scale's no-CUDA warning
    name = torch.cuda.get_device_name(0) if real else "none (dry run on the CPU)"
    has_fastai = importlib.util.find_spec("fastai") is not None
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPU: {name}, "
          f"{torch.cuda.device_count() if real else 0} device(s), fastai: "
          f"{'yes' if has_fastai else 'no'}", flush=True)

    import cfcourse
    from cfcourse import env
    from cfcourse.data import random_split
    from cfcourse.data.synthetic import planted_ratings, write_ratings_csv
    from cfcourse.metrics import rmse

    planted = planted_ratings(n_users=2000, n_items=1000, n_ratings=200_000, n_factors=8,
                              noise=0.5, seed=0)
    train, valid = random_split(planted.ratings, valid_pct=0.2, seed=0)
    known = valid[valid["user"].isin(train["user"]) & valid["item"].isin(train["item"])]
    mean_rmse = rmse(np.full(len(known), train["rating"].mean()), known["rating"])

    @check("env: scale and device")
    def _():
        with scale_set(None):
            expect(env.scale() == ("gpu" if real else "cpu"), f"unset scale -> {env.scale()}")
            expect(env.device() == dev, f"unset scale -> device {env.device()}")
        with scale_set("ci"):
            expect(env.device() == torch.device("cpu"), "ci scale must stay on the CPU")
        return f"unset -> {dev}; ci -> cpu"

    if has_fastai:
        from cfcourse.fastai_glue import collab_dataloaders, tensor_dataloaders

        small_train, small_valid = train.head(20_000), valid.head(5_000)

        @check("loaders: device from env.device(), device= wins")
        def _():
            seen = {}
            for scale_name, want in (("ci", torch.device("cpu")), (gpu_scale, dev)):
                with scale_set(scale_name):
                    for make in (collab_dataloaders, tensor_dataloaders):
                        dls = make(small_train, small_valid, bs=1024)
                        xb, yb = next(iter(dls.train))
                        got = (torch.device(dls.device).type, xb.device.type, yb.device.type)
                        seen[f"{make.__name__}@{scale_name}"] = got[1]
                        expect(set(got) == {want.type}, f"{make.__name__} at {scale_name}: "
                               f"dls/xb/yb on {got}, wanted {want.type}")
                    for make in (collab_dataloaders, tensor_dataloaders):
                        dls = make(small_train, small_valid, bs=1024, device="cpu")
                        xb, _ = next(iter(dls.train))
                        expect(xb.device.type == "cpu", f"{make.__name__}(device='cpu') "
                               f"gave {xb.device}")
            with scale_set(gpu_scale):
                on_dev = next(iter(tensor_dataloaders(small_train, small_valid, bs=1024).train))
            on_cpu = next(iter(tensor_dataloaders(small_train, small_valid, bs=1024,
                                                  device="cpu").train))
            expect(all(torch.equal(a.cpu(), b) for a, b in zip(on_dev, on_cpu)),
                   "tensor loaders: the first shuffled batch differs between devices")
            return ", ".join(f"{k}: {v}" for k, v in seen.items()) + "; same rows everywhere"

        @check("learner_utils: one fastai epoch on the GPU, curves and RMSE")
        def _():
            from fastai.collab import collab_learner

            from cfcourse.fastai_glue import fit_recording, valid_rmse

            with scale_set(gpu_scale):
                dls = tensor_dataloaders(train, valid, bs=4096)
                learn = collab_learner(dls, n_factors=32, y_range=(0, 5.5))
                curves = fit_recording(learn, epochs=1, lr=5e-3, wd=0.01)
                score = valid_rmse(learn)
            where = {p.device.type for p in learn.model.parameters()}
            expect(where == {dev.type}, f"model on {where}")
            expect(np.isfinite(score) and np.isfinite(curves["valid"][0]), "non-finite RMSE")
            return f"model on {dev.type}; valid RMSE {score:.4f} (mean alone {mean_rmse:.4f})"
    else:
        RESULTS.append(("loaders and learner_utils", True,
                        "SKIPPED: fastai is not importable (install the wheelhouse of "
                        "shared/gpu/README.md to check them)"))
        print(f"SKIP  {RESULTS[-1][0]}: {RESULTS[-1][2]}", flush=True)

    for kind, opts in (("dot_bias", {"epochs": 1}), ("nn", {"epochs": 1, "bs": 4096})):

        @check(f"cfcourse.fit kind={kind}: one epoch on {dev.type}, predict/recommend/save/load")
        def _(kind=kind, opts=opts):
            with scale_set(gpu_scale):
                start = time.perf_counter()
                model = cfcourse.fit(train, kind=kind, random_state=0, **opts)
                if real:
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - start
            expect(model.device_.type == dev.type, f"model on {model.device_}")
            pred = model.predict(known)
            score = rmse(pred, known["rating"])
            expect(np.isfinite(score) and score < mean_rmse,
                   f"RMSE {score:.4f} not below the mean's {mean_rmse:.4f}")
            strangers = pd.DataFrame({"user": [-1, int(train["user"].iloc[0])],
                                      "item": [int(train["item"].iloc[0]), -1]})
            expect(np.isfinite(model.predict(strangers, unknown="bias")).all(), "bias fallback")
            user, item = train["user"].iloc[0], train["item"].iloc[0]
            expect(len(model.recommend(user, k=5)) == 5, "recommend")
            if kind == "dot_bias":
                expect(len(model.similar_items(item, k=5)) == 5, "similar_items")
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "m.npz"
                model.save(path)
                on_cpu = cfcourse.load(path, device="cpu")
                with scale_set(gpu_scale):
                    on_dev = cfcourse.load(path)
            expect(on_dev.device_.type == dev.type and on_cpu.device_.type == "cpu", "load device")
            gap = float(np.abs(on_cpu.predict(known) - pred).max())
            expect(gap < 1e-4 and np.allclose(on_dev.predict(known), pred, atol=1e-6),
                   f"reloaded predictions differ by {gap:.2e}")
            return (f"{seconds:.1f} s, RMSE {score:.4f} (mean alone {mean_rmse:.4f}); "
                    f"CPU reload within {gap:.1e}")

    @check(f"train.fit_plain on {dev.type}; an out-of-range position is refused first")
    def _():
        from cfcourse.models.dot_product import DotProductBias
        from cfcourse.train import fit_plain

        x = torch.stack([torch.randint(0, 50, (4000,)), torch.randint(0, 40, (4000,))], 1).to(dev)
        y = (torch.rand(4000) * 4 + 1).to(dev)
        model = DotProductBias(50, 40, n_factors=4).to(dev)
        losses = fit_plain(model, x, y, epochs=2, lr=0.01, bs=512, optimizer="adam")
        expect(len(losses) == 2 and all(np.isfinite(losses)), f"losses {losses}")
        try:
            fit_plain(DotProductBias(50, 39, n_factors=4).to(dev), x, y, epochs=1)
            raise AssertionError("expected an IndexError for item positions up to 39")
        except IndexError as err:
            expect("no row for" in str(err), f"unclear message: {err}")
        expect(float((torch.ones(3, device=dev) * 2).sum()) == 6.0, "device unusable after it")
        return f"losses {losses[0]:.3f} -> {losses[1]:.3f}; bad position refused, device fine"

    workdir = Path(tempfile.mkdtemp(prefix="cfcourse-gpu-check-"))
    csv = workdir / "ratings.csv"
    write_ratings_csv(planted_ratings(n_users=500, n_items=300, n_ratings=30_000, n_factors=4,
                                      seed=0).ratings, csv)
    run_env = {**os.environ, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    script = ["-m", "cfcourse.distributed", "--data", str(csv), "--epochs", "2", "--bs", "1024",
              "--n-factors", "8", "--backend", backend]

    def launch(cmd: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=run_env, cwd=ROOT, capture_output=True, text=True,
                              timeout=240, check=False)

    @check(f"distributed: one-rank {backend} DDP step under torchrun")
    def _():
        from cfcourse.distributed import load_result

        out = workdir / "one_rank.npz"
        done = launch([*torchrun, "--nproc_per_node=1", *script, "--out", str(out)])
        expect(done.returncode == 0, f"exit {done.returncode}: {done.stderr[-1500:]}")
        meta, _ = load_result(out)
        expect(meta["ddp"] and meta["world_size"] == 1, f"ddp={meta['ddp']}")
        expect(meta["device"].startswith(dev.type), f"trained on {meta['device']}")
        expect(np.isfinite(meta["valid_rmse"]), "non-finite RMSE")
        return (f"{meta['device']}, DDP, losses {[round(v, 4) for v in meta['losses']]}, "
                f"valid RMSE {meta['valid_rmse']:.4f}")

    if real:

        @check("distributed: nccl without torchrun is refused with the command to run")
        def _():
            done = launch([sys.executable, *script, "--out", str(workdir / "x.npz")])
            expect(done.returncode != 0 and "torchrun" in done.stderr,
                   f"exit {done.returncode}: {done.stderr[-800:]}")
            return done.stderr.strip().splitlines()[-1][:160]

        n_gpus = torch.cuda.device_count()

        @check(f"distributed: {n_gpus + 1} nccl ranks on {n_gpus} GPU(s) are refused")
        def _():
            done = launch([*torchrun, f"--nproc_per_node={n_gpus + 1}", *script,
                           "--out", str(workdir / "x.npz")])
            expect(done.returncode != 0 and f"--nproc_per_node={n_gpus} or fewer" in done.stderr,
                   f"exit {done.returncode}: {done.stderr[-800:]}")
            return "refused before init_process_group"

    failed = [r for r in RESULTS if not r[1]]
    lines = [f"GPU check, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {name}, "
             f"torch {torch.__version__}", ""]
    lines += [f"- {'PASS' if ok else 'FAIL'} {check_name}: {detail}"
              for check_name, ok, detail in RESULTS]
    lines += ["", f"{len(RESULTS) - len(failed)} of {len(RESULTS)} checks passed."]
    report = "\n".join(lines)
    print("\n" + report)
    if args.out:
        Path(args.out).write_text(report + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
