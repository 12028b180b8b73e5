"""The ``minirobust`` command.

    minirobust info                     versions, devices, backend, kernel tiers
    minirobust demo                     train a small net and print its accuracy
    minirobust data fetch mnist         download and verify a dataset
    minirobust data info mnist          load a dataset and print its shapes and statistics
    minirobust train --norm inf --eps 0.06 --epochs 10 --out runs/linf
                                        Algorithm 1 (robust training); no --norm: plain training
    minirobust attack --model runs/linf/model.npz --method pgd --norm inf --eps 0.1
    minirobust evaluate --model runs/linf/model.npz --norm inf --eps-grid 0,0.05,0.1
    minirobust sweep --out results/sweeps/mnist --epochs 15 [--runner dask]
                                        norm x eps x seed grids on a process pool or Dask
    minirobust exercises check all      check your solutions of the lesson exercises

The subcommands that train or evaluate take ``--backend cpu|gpu``. Bad flag values end in a one-line error
(exit status 2), not a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from .errors import InputError, MinirobustError


def _add_backend(p, help="where arrays live (default: $MINIROBUST_BACKEND or cpu)"):
    p.add_argument("--backend", choices=("cpu", "gpu"), default=None, help=help)


def _add_common(p):
    _add_backend(p)
    p.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default 0)")


def _int_at_least(minimum, what):
    """An argparse type: a whole number >= ``minimum``, described as ``what`` in errors."""
    def parse(text):
        value = _parsed(text, int, "a whole number")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonneg_int = _int_at_least(0, "a whole number >= 0")


def _add_data_dir(p):
    p.add_argument("--data-dir", default=None,
                   help="dataset folder (default: $MINIROBUST_DATA, else ~/.cache/minirobust)")


def cmd_info(args):
    from . import info  # noqa: PLC0415

    info()


def cmd_demo(args):
    from .demo import run_demo  # noqa: PLC0415

    run_demo(epochs=args.epochs, n_train=args.n_train, seed=args.seed, synthetic=args.synthetic,
             data_dir=args.data_dir)


def cmd_data(args):
    import numpy as np  # noqa: PLC0415

    from .data import data_root, dataset_stats, fetch_dataset, load_dataset  # noqa: PLC0415

    if args.action == "fetch":
        folder = fetch_dataset(args.dataset, args.data_dir, urls=args.url or None)
        load_dataset(args.dataset, args.data_dir, download=False, log=print)  # parse + verify once
        print(f"{args.dataset}: verified in {folder}")
        return
    d = load_dataset(args.dataset, args.data_dir, download=not args.no_download)
    mean, std = dataset_stats(d.x_train, per_channel=d.x_train.shape[1] > 1)
    print(f"{d!r} from {data_root(args.data_dir)}")
    print(f"train label counts {np.bincount(d.y_train, minlength=10).tolist()}")
    print(f"test label counts  {np.bincount(d.y_test, minlength=10).tolist()}")
    print(f"training mean {mean} std {std} (on the [0, 1] scale)")


def _parsed(text, cast=float, what="a number"):
    """``cast(text)``, or the one-line argparse error that names what was expected."""
    try:
        return cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _finite_float(text):
    """A finite number (inf and nan are refused: they would only surface as NaN later)."""
    value = _parsed(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def _nonneg_float(text):
    value = _parsed(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def _positive_float(text):
    value = _nonneg_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def _cifar_width(text):
    """--width: > 0 and at most nets.MAX_CIFAR_WIDTH, checked before any data is read."""
    from .nets import MAX_CIFAR_WIDTH  # noqa: PLC0415

    value = _positive_float(text)
    if value > MAX_CIFAR_WIDTH:
        raise argparse.ArgumentTypeError(f"expected a width in (0, {MAX_CIFAR_WIDTH:g}] (width 4 is 240 M "
                                         f"parameters), got {text}")
    return value


def _net_radius(text):
    """``l2=0.05`` -> ("l2", 0.05): one robust net's training radius."""
    name, sep, eps = text.partition("=")
    if not sep or name not in ("linf", "l2", "l1"):
        raise argparse.ArgumentTypeError(f"expected NET=EPS with NET one of linf, l2, l1, got {text!r}")
    return name, _positive_float(eps)


def _norm(text):
    from .robust.balls import parse_norm  # noqa: PLC0415

    try:
        parse_norm(text)
    except MinirobustError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _eps_list(text):
    values = [_nonneg_float(t) for t in text.split(",") if t.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated radii, got {text!r}")
    return values


# ----- outputs are checked before the work starts ------------------------------------------------

def _writable_folder(path, flag):
    """``path`` as a folder we can write in (created if missing), or a one-line error now,
    not after an epoch of training."""
    if path is None:
        return None
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{flag} {path}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".minirobust-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"{flag} {path}: cannot write there ({exc.strerror or exc})") from None
    return path


def _writable_file(path, flag):
    """``path`` as a file we can write (its folder created if missing), checked now."""
    if path is None:
        return None
    if Path(path).is_dir():
        raise InputError(f"{flag} {path}: is a folder, not a file name")
    _writable_folder(Path(path).parent, f"{flag} {path}: its folder")
    return path


def _write_report(path, text, what="report"):
    """Write a finished report; a full disk or a broken path is one line, not a traceback."""
    try:  # written in place, not renamed over: the path may be a device or a pipe the user chose
        Path(path).write_text(text)
    except OSError as exc:
        raise MinirobustError(f"{path}: cannot write the {what} ({exc.strerror or exc})") from None


def add_config_flags(p, config_class):
    """Every field of ``config_class`` declared with ``options.option`` becomes a flag (dest = the
    field's name): the one declaration of each training setting is its TrainConfig field."""
    kinds = {"positive_int": _positive_int, "nonneg_int": _nonneg_int, "finite_float": _finite_float,
             "nonneg_float": _nonneg_float, "positive_float": _positive_float, "norm": _norm}
    for f in dataclasses.fields(config_class):
        meta = f.metadata
        if "flag" not in meta:
            continue
        kind, extra = meta["kind"], {"help": meta["help"], "dest": f.name}
        if kind == "switch":
            p.add_argument(meta["flag"], action="store_true", **extra)
        elif kind == "negated":
            p.add_argument(meta["flag"], action="store_false", **extra)
        elif kind == "choice":
            p.add_argument(meta["flag"], choices=meta["choices"], default=f.default, **extra)
        else:
            p.add_argument(meta["flag"], type=kinds[kind], default=f.default, metavar=meta["metavar"], **extra)


def config_from_args(config_class, args, **given):
    """``config_class`` from the parsed arguments (by field name), ``given`` overriding."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{**{k: v for k, v in vars(args).items() if k in names}, **given})


def flags_changed(config_class, args, which="robust_only") -> list:
    """The flags (of fields marked ``which``) whose value differs from the field's default."""
    return [f.metadata["flag"] for f in dataclasses.fields(config_class)
            if f.metadata.get(which) and getattr(args, f.name) != f.default]


def _load_test_arrays(args, dataset=None):
    """(x_test, y_test) as float32 host arrays in [0, 1]: the attack and evaluate commands' images
    (``dataset``: one already loaded)."""
    from .data import load_dataset, separable_images, to_float  # noqa: PLC0415

    if args.dataset == "synthetic":
        return separable_images(args.n_test or 500, seed=1)
    d = dataset if dataset is not None else load_dataset(args.dataset, args.data_dir)
    return to_float(d.x_test[: args.n_test]), d.y_test[: args.n_test]


def _load_arrays(args):
    """(x_train, y_train, x_test, y_test, mean, std) as float32 host arrays in [0, 1]."""
    from .data import dataset_stats, load_dataset, separable_images, to_float  # noqa: PLC0415

    if args.dataset == "synthetic":
        x, y = separable_images(args.n_train or 2000, seed=0)
        return (x, y, *_load_test_arrays(args), float(x.mean()), float(x.std()))
    d = load_dataset(args.dataset, args.data_dir)
    mean, std = dataset_stats(d.x_train, per_channel=d.x_train.shape[1] > 1)
    return (to_float(d.x_train[: args.n_train]), d.y_train[: args.n_train], *_load_test_arrays(args, d), mean, std)


def _add_dataset(p, default_n_test=None, train=True):
    """--dataset, --data-dir, --n-test and (for commands that train) --n-train."""
    p.add_argument("--dataset", choices=("mnist", "cifar10", "synthetic"), default="mnist")
    _add_data_dir(p)
    if train:
        p.add_argument("--n-train", type=_positive_int, default=None, help="use only the first N training images")
    p.add_argument("--n-test", type=_positive_int, default=default_n_test, help="use only the first N test images")


def cmd_train(args):
    from . import nets  # noqa: PLC0415
    from .robust import RobustTrainer, TrainConfig, robust_accuracy  # noqa: PLC0415

    if args.net not in nets.NETS:
        raise MinirobustError(f"unknown net {args.net!r}; known: {sorted(nets.NETS)}")
    if args.resume and not args.out:
        raise InputError("--resume needs --out (the run folder to resume from)")
    robust_flags = flags_changed(TrainConfig, args) + (["--monitor"] if args.monitor else [])
    if args.norm is None and robust_flags:
        raise InputError(f"{', '.join(robust_flags)}: these shape robust training: they need --norm and --eps")
    if args.stop_on_overfit and not args.monitor:
        raise InputError("--stop-on-overfit needs --monitor N (the held-out images the monitor attacks)")
    _writable_folder(args.out, "--out")
    config = config_from_args(TrainConfig, args)
    config.validate()
    x, y, xt, yt, mean, std = _load_arrays(args)
    monitor = None
    if args.monitor:  # held out from the END of the training images: never trained on, never the test set
        if args.monitor >= len(x):
            raise InputError(f"--monitor {args.monitor}: needs fewer than the {len(x)} training images")
        x, y, monitor = x[: -args.monitor], y[: -args.monitor], (x[-args.monitor :], y[-args.monitor :])
    model = nets.NETS[args.net](seed=args.seed, mean=mean, std=std)
    trainer = RobustTrainer(model, config, out_dir=args.out, resume=args.resume, progress=not args.no_progress,
                            data={"dataset": args.dataset, "n_train": args.n_train, "net": args.net,
                                  **({"monitor": args.monitor} if args.monitor else {})})
    trainer.fit(x, y, monitor=monitor)
    print(f"test accuracy {100 * model.accuracy(xt, yt):.2f}% on {len(xt)} images")
    if args.norm is not None and args.eps > 0:
        r = robust_accuracy(model, xt, yt, args.norm, args.eps, method="fast")
        print(f"fast-method l_{args.norm} accuracy at eps {args.eps:g}: {100 * r['robust_acc']:.2f}%")
    if args.out:
        print(f"model saved to {args.out}/model.npz")


def _attack_kwargs(args):
    if args.method in ("pgd", "apgd"):
        return dict(steps=args.steps, restarts=args.restarts, rng=args.seed)
    if args.method == "square":
        return dict(n_queries=getattr(args, "queries", 1000), rng=args.seed)
    if args.method == "fab":
        return dict(steps=args.steps)
    return {}


def cmd_attack(args):
    from .checkpoint import load_model  # noqa: PLC0415
    from .robust import ATTACKS, norm_stats  # noqa: PLC0415

    _writable_file(args.out, "--out")
    _writable_file(args.figure, "--figure")
    if args.method == "single-pixel" and args.norm is not None:
        raise InputError("--method single-pixel changes one pixel (an l_1 step): it takes no --norm")
    args.norm = args.norm or "inf"
    model = load_model(args.model)
    xt, yt = _load_test_arrays(args)
    fn = ATTACKS[args.method]
    bounds = None if args.no_clip else (0.0, 1.0)
    kw = {"eps": args.eps, "bounds": bounds, "batch_size": 500, **_attack_kwargs(args)}
    if args.method != "single-pixel":
        kw["norm"] = args.norm
    labels = None if args.predicted_labels else yt
    res = fn(model, xt, labels, **kw).to_host()  # host arrays from here on, whatever the backend
    acc = model.accuracy(res.x_adv, yt, 1000)
    stats = norm_stats(res.norms)
    print(f"{args.method} attack, eps {args.eps:g}: success rate {100 * res.success_rate:.2f}% on {len(xt)} images; "
          f"accuracy under attack {100 * acc:.2f}%")
    print("perturbation norms: " + ", ".join(f"{k} {v:.4g}" for k, v in stats.items()))
    if args.out:
        import numpy as np  # noqa: PLC0415

        np.savez_compressed(args.out, x_adv=res.x_adv, success=res.success, norms=res.norms, labels=res.labels)
        print(f"adversarial batch saved to {args.out}")
    if args.figure:
        from .experiments.figures import plot_adversarial_grid  # noqa: PLC0415

        ok = res.success.nonzero()[0][:8]
        from .backend import to_host  # noqa: PLC0415

        plot_adversarial_grid(xt[ok], res.x_adv[ok], to_host(model.predict(xt[ok])), to_host(model.predict(res.x_adv[ok])),
                              args.figure, mark_changed=args.method == "single-pixel")
        print(f"figure saved to {args.figure}")


def cmd_evaluate(args):
    import json  # noqa: PLC0415

    from .checkpoint import load_model  # noqa: PLC0415
    from .robust import AdversarialSet, accuracy_on_set, accuracy_vs_eps, full_range_check  # noqa: PLC0415

    if args.figure and not args.eps_grid:
        raise InputError("--figure draws the accuracy-vs-eps curve: it needs --eps-grid")
    _writable_file(args.out, "--out")
    _writable_file(args.figure, "--figure")
    model = load_model(args.model)
    xt, yt = _load_test_arrays(args)
    report = {"model": str(args.model), "n": len(xt), "clean_acc": model.accuracy(xt, yt)}
    print(f"clean accuracy {100 * report['clean_acc']:.2f}% on {len(xt)} images")
    if args.eps_grid:
        curve = accuracy_vs_eps(model, xt, yt, args.norm, args.eps_grid, method=args.method,
                                **_attack_kwargs(args))
        report["curve"] = {"norm": args.norm, "method": args.method, "points": curve}
        for r in curve:
            print(f"  {args.method} l_{args.norm} eps {r['eps']:<6g} robust acc {100 * r['robust_acc']:6.2f}%  "
                  f"(on clean-correct {100 * r['robust_acc_on_clean_correct']:6.2f}%)")
        if args.figure:
            from .experiments.figures import plot_accuracy_vs_eps  # noqa: PLC0415

            plot_accuracy_vs_eps({Path(args.model).parent.name or "model": [(r["eps"], r["robust_acc"]) for r in curve]},
                                 args.figure, title=f"{args.method} l_{args.norm}")
            print(f"figure saved to {args.figure}")
    if args.adv_set:
        report["adversarial_set"] = accuracy_on_set(model, AdversarialSet.load(args.adv_set))
        print(f"accuracy on {args.adv_set}: {report['adversarial_set']}")
    if args.suite:
        from .robust import run_suite  # noqa: PLC0415

        eps = _one_eps(args, "--suite")
        result = run_suite(model, xt, yt, norm=args.norm, eps=eps, version=args.suite, rng=args.seed)
        report["suite"] = result.to_json()
        report["suite"]["per_example"] = result.per_example(xt, yt)
        print(f"suite {args.suite} ({result.budgets}): robust accuracy {100 * result.robust_acc:.2f}% "
              f"(l_{result.norm} eps {eps:g}); broken by: "
              + ", ".join(f"{k} {v}" for k, v in report["suite"]["broken_by"].items()))
    if args.masking_check:
        from .robust import masking_checks  # noqa: PLC0415

        report["full_range_check"] = full_range_check(model, xt, yt)
        r = report["full_range_check"]
        print(f"fast l_inf at eps 1: accuracy {100 * r['robust_acc']:.2f}% "
              f"({'SUSPICIOUS: possible gradient masking' if r['suspicious'] else 'ok: at or below chance'})")
        eps = _one_eps(args, "--masking-check", required=False)
        if eps is None:
            print("the other gradient-masking checks need the radius: give --eps to run them")
        else:
            print(f"gradient-masking checks (l_{args.norm}, eps {eps:g}, {len(xt)} points):")
            report["masking_checks"] = [c.to_json() for c in masking_checks(model, xt, yt, norm=args.norm, eps=eps,
                                                                            rng=args.seed)]
    if args.out:
        _write_report(args.out, json.dumps(report, indent=1))
        print(f"report saved to {args.out}")


def cmd_certify(args):
    """Clean, certified and (optionally) attacked accuracy on the same points."""
    import json  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from . import certify  # noqa: PLC0415
    from .backend import to_host  # noqa: PLC0415
    from .checkpoint import load_model  # noqa: PLC0415

    if args.method == "ibp" and args.norm != "inf":
        raise InputError("--method ibp certifies l_inf balls: use --norm inf (or --method lipschitz|smoothing)")
    if args.method == "smoothing" and args.norm != "2":
        raise InputError("--method smoothing certifies l_2 radii: use --norm 2")
    _writable_file(args.out, "--out")
    model = load_model(args.model)
    xt, yt = _load_test_arrays(args)
    clean_ok = to_host(model.predict(xt, 500)) == yt
    if args.method == "ibp":
        cert = certify.ibp(model, xt, yt, args.eps)
    elif args.method == "lipschitz":
        cert = certify.lipschitz_certify(model, xt, yt, args.eps, norm=args.norm)
    else:
        cert = certify.smooth(model, xt, yt, sigma=args.sigma, n0=args.n0, n=args.n_samples, alpha=args.alpha,
                              rng=args.seed, eps=args.eps)
    report = {"model": str(args.model), "n": len(xt), "clean_acc": float(clean_ok.mean()), **cert.to_json()}
    print(f"clean accuracy {100 * clean_ok.mean():.2f}% on {len(xt)} images")
    print(f"certified accuracy ({args.method}, l_{args.norm} eps {args.eps:g}): {100 * cert.certified_acc:.2f}%"
          + (" (of the smoothed classifier, each certificate at level alpha)" if args.method == "smoothing" else ""))
    if args.attack:
        from .robust import run_suite  # noqa: PLC0415

        suite = run_suite(model, xt, yt, norm=args.norm, eps=args.eps, rng=args.seed, log=None)
        report["suite_acc"] = suite.robust_acc
        print(f"accuracy under the attack suite (same points): {100 * suite.robust_acc:.2f}%")
        if args.method != "smoothing" and np.any(cert.certified & ~suite.robust_ok):
            raise MinirobustError("a certified point was broken by an attack: the certificate is unsound (a bug)")
    if args.out:
        _write_report(args.out, json.dumps(report, indent=1))
        print(f"report saved to {args.out}")


def _one_eps(args, flag, required=True):
    """The radius for --suite / --masking-check: --eps, else the only value of --eps-grid."""
    if args.eps is not None:
        return args.eps
    if args.eps_grid and len(args.eps_grid) == 1:
        return args.eps_grid[0]
    if not required:
        return None
    raise InputError(f"{flag} needs the radius: give --eps (in [0, 1] pixel units)")


def cmd_sweep(args):
    from .experiments.sweep import grid, parse_radii, sweep  # noqa: PLC0415

    norms = [None if n.strip().lower() in ("none", "plain") else n.strip() for n in args.norms.split(",") if n.strip()]
    for n in norms:
        if n is not None and n not in ("inf", "2", "1"):
            raise InputError(f"--norms {args.norms}: each must be none, inf, 2 or 1, not {n!r}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--seeds {args.seeds}: expected comma-separated whole numbers") from None
    if not norms or not seeds or min(seeds) < 0:
        raise InputError("--norms and --seeds need at least one value each (seeds >= 0)")
    radii = parse_radii(args.radii) or None
    unused = sorted(set(radii or {}) - {n for n in norms if n is not None})
    if unused:
        raise InputError(f"--radii for l_{', l_'.join(unused)}: that norm is not in --norms {args.norms}")
    _writable_folder(args.out, "--out")
    configs = grid(norms=norms, radii=radii, seeds=seeds, epochs=args.epochs,
                   net=args.net, dataset=args.dataset, n_train=args.n_train, n_test=args.n_test, n_pgd=args.n_pgd,
                   pgd_steps=args.pgd_steps)
    rows = sweep(configs, args.out, runner=args.runner, workers=args.workers, scheduler=args.scheduler,
                 data_dir=args.data_dir, progress=not args.no_progress)
    print(Path(args.out, "summary.md").read_text())
    print(f"{len(rows)} runs; results in {args.out}/results.csv, summary in {args.out}/summary.md and summary.png")


def cmd_exercises(args):
    from . import exercises  # noqa: PLC0415

    if args.action == "list":
        for name, exercise in exercises.EXERCISES.items():
            print(f"{name:<22}{exercise.signature}")
        return 0
    names = list(exercises.EXERCISES) if args.name == "all" else [args.name]
    if args.file and len(names) > 1:
        raise InputError("--file checks one exercise: name it instead of 'all'")
    # each in a child process with a time limit: a learner's endless loop or sys.exit() cannot hang or
    # end the checker, and `check all` goes on to the next exercise whatever one of them does
    results = []
    for name in names:
        try:
            path = args.file or exercises.find_exercise_file(name, args.folder)
            results.append(exercises.check_in_child(path, name, time_limit=args.time_limit))
        except InputError as exc:
            if len(names) == 1:
                raise
            results.append(exercises.Result(name, False, f"FAILED {name}: {exc}"))
        print(results[-1].message)
    if len(results) > 1:
        print(f"{sum(r.passed for r in results)} of {len(results)} exercises pass")
    return 0 if all(r.passed for r in results) else 1


# the names of robust.registry.ATTACKS (a test keeps the two equal; the registry is not imported
# here so that building the parser stays fast)
ATTACK_NAMES = ("fast", "pgd", "single-pixel", "apgd", "square", "fab")

CIFAR10_ONLY = ("width", "dropout", "lr", "lr_halve_every", "attack_mode", "radius")


def _name_list(text):
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def cmd_reproduce_eps03(args):
    from .experiments.standard_radius import QUICK, Eps03Settings, StandardRadius  # noqa: PLC0415

    given = [f"--{k.replace('_', '-')}" for k in CIFAR10_ONLY if getattr(args, k) is not None]
    if given or args.no_clip:
        raise MinirobustError(f"{', '.join(given + (['--no-clip'] if args.no_clip else []))}: not for "
                              "`reproduce mnist-eps03`")
    opts = dict(QUICK) if args.quick else {}
    for key, flag in (("epochs", "epochs"), ("n_train", "n_train"), ("n_clean", "n_test"), ("n_suite", "n_suite")):
        if getattr(args, flag) is not None:
            opts[key] = getattr(args, flag)
    settings = Eps03Settings(seed=args.seed, **opts)
    name = "mnist_eps03" + ("-quick" if args.quick else "")
    results_dir = _writable_folder(args.results_dir or f"results/{name}", "--results-dir")
    runs_dir = _writable_folder(args.runs_dir or f"runs/{name}", "--runs-dir")
    StandardRadius(settings, nets_=args.nets or ("paper-mnist", "large-mnist"),
                   methods=args.methods or ("paper", "fgsm-rs", "pgd", "trades"), results_dir=results_dir,
                   runs_dir=runs_dir, data_dir=args.data_dir,
                   time_limit=None if args.time_limit is None else 60 * args.time_limit,
                   progress=not args.no_progress).run()


def _named_model(text):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=MODEL.npz (NAME like large-mnist/pgd), got {text!r}")
    return name, path


def cmd_reproduce_certified(args):
    from .experiments.certified import QUICK, CertifiedReproduction, CertifiedSettings  # noqa: PLC0415

    given = [f"--{k.replace('_', '-')}" for k in (*CIFAR10_ONLY, "methods") if getattr(args, k) is not None]
    if given or args.no_clip:
        raise MinirobustError(f"{', '.join(given + (['--no-clip'] if args.no_clip else []))}: not for "
                              "`reproduce certified`")
    opts = dict(QUICK) if args.quick else {}
    for key, flag in (("epochs", "epochs"), ("n_train", "n_train"), ("n_eval", "n_suite")):
        if getattr(args, flag) is not None:
            opts[key] = getattr(args, flag)
    for name, path in args.also or ():
        if not Path(path).is_file():
            raise InputError(f"--also {name}={path}: no such model file")
    name = "certified" + ("-quick" if args.quick else "")
    CertifiedReproduction(CertifiedSettings(seed=args.seed, **opts), nets_=args.nets or ("paper-mnist", "large-mnist"),
                          eps_list=args.eps_list or (0.1, 0.3), also=args.also or (),
                          results_dir=_writable_folder(args.results_dir or f"results/{name}", "--results-dir"),
                          runs_dir=_writable_folder(args.runs_dir or f"runs/{name}", "--runs-dir"),
                          data_dir=args.data_dir, time_limit=None if args.time_limit is None else 60 * args.time_limit,
                          progress=not args.no_progress).run()


def cmd_reproduce(args):
    if args.experiment not in ("mnist-eps03", "certified") and (args.nets or args.methods or args.n_suite is not None
                                                                or args.time_limit is not None):
        raise MinirobustError("--nets, --methods, --time-limit and --n-suite: only for `reproduce mnist-eps03` "
                              "and `reproduce certified`")
    if args.experiment != "certified" and (args.eps_list or args.also):
        raise MinirobustError("--eps-list and --also: only for `reproduce certified`")
    if args.experiment == "mnist-eps03":
        return cmd_reproduce_eps03(args)
    if args.experiment == "certified":
        return cmd_reproduce_certified(args)
    if args.experiment == "cifar10":
        from .experiments.cifar10 import CPU_RUN, QUICK, Cifar10Reproduction  # noqa: PLC0415
        from .experiments.cifar10 import Cifar10Settings as Settings  # noqa: PLC0415

        opts, Reproduction = dict(QUICK if args.quick else CPU_RUN), Cifar10Reproduction
    else:
        from .experiments.mnist import QUICK, MnistReproduction, Settings  # noqa: PLC0415

        given = [f"--{k.replace('_', '-')}" for k in CIFAR10_ONLY if getattr(args, k) is not None]
        if given:  # never ignore a flag without a word
            raise MinirobustError(f"{', '.join(given)}: only for `reproduce cifar10`")
        opts, Reproduction = (dict(QUICK) if args.quick else {}), MnistReproduction
    for key in ("epochs", "n_train", "n_test", *CIFAR10_ONLY):
        if getattr(args, key) is not None:
            opts[key] = getattr(args, key)
    if "radius" in opts:  # --radius l2=0.05 --radius linf=0.002 -> {"l2": 0.05, "linf": 0.002}
        opts["radii"] = dict(opts.pop("radius"))
    settings = Settings(seed=args.seed, clip=not args.no_clip, quick=args.quick, **opts)
    name = args.experiment + ("-quick" if args.quick else "")
    results_dir = _writable_folder(args.results_dir or f"results/{name}", "--results-dir")
    runs_dir = _writable_folder(args.runs_dir or f"runs/{name}", "--runs-dir")
    Reproduction(settings, results_dir=results_dir, runs_dir=runs_dir, data_dir=args.data_dir, resume=args.resume,
                 progress=not args.no_progress).run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minirobust", description=__doc__.split("\n")[0].strip())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="print versions, devices, the backend and kernel tiers")
    _add_common(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="train the paper's MNIST net on a small task and print accuracy")
    _add_common(p)
    p.add_argument("--epochs", type=_positive_int, default=1)
    p.add_argument("--n-train", type=_positive_int, default=None, help="use only the first N training images")
    p.add_argument("--synthetic", action="store_true", help="use the synthetic task instead of MNIST")
    _add_data_dir(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("data", help="fetch (download + verify) or describe a dataset")
    _add_common(p)
    p.add_argument("action", choices=("fetch", "info"))
    p.add_argument("dataset", choices=("mnist", "cifar10"))
    _add_data_dir(p)
    p.add_argument("--url", action="append", metavar="URL",
                   help="download from this base URL (MNIST) or archive URL (CIFAR-10) instead of the "
                        "canonical sources; repeat for mirrors")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train a net, plainly or robustly (Algorithm 1)")
    _add_common(p)
    _add_dataset(p)
    p.add_argument("--net", default="paper-mnist", help="architecture: paper-mnist | large-mnist | paper-cifar10")
    from .robust.trainer import TrainConfig  # noqa: PLC0415 - the flags are TrainConfig's fields

    add_config_flags(p, TrainConfig)
    p.add_argument("--monitor", type=_nonneg_int, default=0, metavar="N",
                   help="hold out the last N training images; PGD accuracy on them after each epoch "
                        "(pgd_acc_monitor), and a line when catastrophic overfitting shows")
    p.add_argument("--out", default=None, help="run folder: checkpoint.npz, metrics.jsonl, model.npz")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("attack", help="attack a saved model on test images")
    _add_common(p)
    _add_dataset(p, default_n_test=1000, train=False)
    p.add_argument("--model", required=True, help="a model.npz or checkpoint.npz")
    p.add_argument("--method", choices=ATTACK_NAMES, default="fast")
    p.add_argument("--norm", type=_norm, default=None, help="inf (default), 2, 1 or any p >= 1; not for single-pixel")
    p.add_argument("--eps", type=_nonneg_float, default=0.1)
    p.add_argument("--steps", type=_positive_int, default=10, help="PGD / APGD steps")
    p.add_argument("--restarts", type=_positive_int, default=1, help="PGD / APGD restarts")
    p.add_argument("--queries", type=_positive_int, default=1000, help="Square: queries (forward passes)")
    p.add_argument("--no-clip", action="store_true", help="do not clip to [0, 1]")
    p.add_argument("--predicted-labels", action="store_true",
                   help="attack the model's predictions instead of the true labels")
    p.add_argument("--out", default=None, help="save the adversarial batch (.npz)")
    p.add_argument("--figure", default=None, help="save a PNG grid of clean vs adversarial images")
    p.set_defaults(func=cmd_attack)

    p = sub.add_parser("evaluate", help="clean accuracy, accuracy-vs-eps curves, adversarial sets")
    _add_common(p)
    _add_dataset(p, train=False)
    p.add_argument("--model", required=True)
    p.add_argument("--norm", type=_norm, default="inf")
    p.add_argument("--eps-grid", type=_eps_list, default=None, help="comma-separated eps values")
    p.add_argument("--method", choices=("fast", "pgd", "apgd"), default="fast")
    p.add_argument("--steps", type=_positive_int, default=10)
    p.add_argument("--restarts", type=_positive_int, default=1)
    p.add_argument("--adv-set", default=None, help="an adversarial set (.npz) to score the model on")
    p.add_argument("--eps", type=_nonneg_float, default=None, help="the radius for --suite and --masking-check")
    p.add_argument("--suite", choices=("standard", "fast"), default=None,
                   help="worst case per example over an attack suite: standard (AutoAttack's: APGD-CE, APGD-T and "
                        "FAB-T on 9 targets, Square 5000 queries) or fast (APGD-CE, APGD-T on 3 targets, Square "
                        "1000); the report records each example")
    p.add_argument("--masking-check", action="store_true",
                   help="gradient-masking checks (needs --eps): fast l_inf at eps 1, zero/NaN gradients, "
                        "randomness, an unbounded attack, accuracy vs eps, Square vs APGD")
    p.add_argument("--figure", default=None, help="save the accuracy-vs-eps curve as PNG")
    p.add_argument("--out", default=None, help="save the report as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("certify", help="certified accuracy (IBP, Lipschitz, randomized smoothing) beside clean and "
                                       "attacked accuracy on the same points")
    _add_common(p)
    _add_dataset(p, default_n_test=1000, train=False)
    p.add_argument("--model", required=True, help="a model.npz or checkpoint.npz")
    p.add_argument("--method", choices=("ibp", "lipschitz", "smoothing"), default="ibp")
    p.add_argument("--norm", choices=("inf", "2"), default="inf")
    p.add_argument("--eps", type=_nonneg_float, required=True, help="the radius to certify, in [0, 1] pixel units")
    p.add_argument("--attack", choices=("suite",), default=None, help="also run the attack suite on the same points")
    p.add_argument("--sigma", type=_positive_float, default=0.25, help="smoothing: noise level")
    p.add_argument("--n0", type=_positive_int, default=100, help="smoothing: samples to pick the class")
    p.add_argument("--n-samples", type=_positive_int, default=1000, help="smoothing: samples to bound its probability")
    p.add_argument("--alpha", type=_positive_float, default=0.001, help="smoothing: failure probability")
    p.add_argument("--out", default=None, help="save the report as JSON")
    p.set_defaults(func=cmd_certify)

    p = sub.add_parser("sweep", help="train and evaluate many nets (norm x eps x seed) on a process pool or Dask")
    _add_dataset(p)
    p.add_argument("--out", required=True, help="the sweep's folder (re-run to resume: finished runs are skipped)")
    p.add_argument("--norms", default="none,inf,2,1", help="comma-separated: none (plain), inf, 2, 1 (default all)")
    p.add_argument("--radii", nargs="*", default=None, metavar="NORM=EPS[,EPS]",
                   help="training radii per norm in pixel units (default: the paper's, inf=0.0616 2=0.6162 1=0.6162)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--epochs", type=_positive_int, default=5)
    p.add_argument("--net", default="paper-mnist", choices=("paper-mnist", "large-mnist"))
    p.add_argument("--n-pgd", type=_positive_int, default=500, help="test images for the PGD columns")
    p.add_argument("--pgd-steps", type=_positive_int, default=20)
    p.add_argument("--runner", default="local", choices=("local", "dask"))
    p.add_argument("--workers", type=_positive_int, default=2, help="processes (local) or Dask workers (LocalCluster)")
    p.add_argument("--scheduler", default=None, help="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")
    _add_backend(p, "where the workers' arrays live (default: $MINIROBUST_BACKEND or cpu); gpu: they share the card")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("exercises", help="list the gradient-check exercises, or check your solution of one")
    p.add_argument("action", choices=["list", "check"])
    p.add_argument("name", nargs="?", default="all", help="an exercise name, or 'all' (default)")
    p.add_argument("--file", help="the file with your function (default: <folder>/<name>.py)")
    p.add_argument("--folder", help="where your exercise files are (default: ./exercises or ./lessons/exercises)")
    p.add_argument("--time-limit", type=_positive_float, default=60.0, metavar="SECONDS",
                   help="stop a check that gives no verdict in this time (default 60)")
    p.set_defaults(func=cmd_exercises)

    p = sub.add_parser("reproduce", help="run the paper's experiment end to end (Table 1/2, AMNIST/ACIFAR, curves, "
                                         "figures)")
    _add_common(p)
    p.add_argument("experiment", choices=("mnist", "cifar10", "mnist-eps03", "certified"),
                   help="mnist, cifar10: the paper's experiments; mnist-eps03: every training method at l_inf 0.3 "
                        "(the field's radius) under the attack suite; certified: IBP-trained nets, certified beside "
                        "attacked")
    _add_data_dir(p)
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="epochs per net (mnist: default 20, the authors ran 120; cifar10: default 7, the authors "
                        "ran 300)")
    p.add_argument("--quick", action="store_true", help="a small subset, 1 epoch (mnist: 10,000 training and 2,000 "
                   "test images; cifar10: 2,000 and 500, a width-1/8 net)")
    p.add_argument("--width", type=_cifar_width, default=None,
                   help="cifar10: scale every channel count of the VGG net (default 0.25; the authors' net is 1)")
    p.add_argument("--dropout", type=_nonneg_float, default=None,
                   help="cifar10: scale the authors' dropout rates (default 0.25; 0: no dropout)")
    p.add_argument("--lr", type=_positive_float, default=None, help="cifar10: SGD learning rate (default 0.1; "
                   "the authors' 1)")
    p.add_argument("--lr-halve-every", type=_positive_int, default=None,
                   help="cifar10: halve the lr every N epochs (default 2; the authors' 25)")
    p.add_argument("--attack-mode", choices=("eval", "train"), default=None,
                   help="cifar10: the training ascent step's mode: eval (default: BatchNorm on running "
                        "statistics, no dropout) or train (the authors': batch statistics, dropout on)")
    p.add_argument("--radius", type=_net_radius, action="append", default=None, metavar="NET=EPS",
                   help="cifar10: a robust net's training radius in pixel units, e.g. l2=0.05 (repeatable; "
                        "defaults: linf 0.001, l2 0.025, l1 1)")
    p.add_argument("--n-train", type=_positive_int, default=None)
    p.add_argument("--n-test", type=_positive_int, default=None)
    p.add_argument("--resume", action="store_true", help="continue a stopped run; finished nets are kept "
                   "(mnist-eps03 always resumes)")
    p.add_argument("--nets", type=_name_list, default=None, help="mnist-eps03, certified: comma-separated nets "
                   "(default paper-mnist,large-mnist)")
    p.add_argument("--methods", type=_name_list, default=None, help="mnist-eps03: comma-separated training methods "
                   "(default paper,fgsm-rs,pgd,trades)")
    p.add_argument("--time-limit", type=_positive_float, default=None, metavar="MINUTES",
                   help="mnist-eps03: no new epoch of a run starts after this many minutes of it (resume later)")
    p.add_argument("--n-suite", type=_positive_int, default=None,
                   help="mnist-eps03, certified: test images for PGD and the suite (default 1000)")
    p.add_argument("--eps-list", type=_eps_list, default=None, help="certified: test radii (default 0.1,0.3)")
    p.add_argument("--also", type=_named_model, action="append", default=None, metavar="NAME=MODEL.npz",
                   help="certified: also certify and attack this model (repeatable), e.g. large-mnist/pgd=runs/...")
    p.add_argument("--no-clip", action="store_true", help="do not clip adversarial inputs to [0, 1]")
    p.add_argument("--results-dir", default=None, help="default results/EXPERIMENT (results/EXPERIMENT-quick "
                   "with --quick)")
    p.add_argument("--runs-dir", default=None, help="checkpoints; default runs/EXPERIMENT (runs/EXPERIMENT-quick)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_reproduce)
    return parser


class _QuietWhenClosed:
    """stdout that stops writing, instead of raising, once the reader has gone (``| head``):
    training goes on to save its model; what it prints after that is dropped."""

    def __init__(self, stream):
        self._stream, self._closed = stream, False

    def write(self, text):
        if not self._closed:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._close()
        return len(text)

    def flush(self):
        if not self._closed:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._close()

    def _close(self):
        self._closed = True
        try:  # what is still buffered goes to /dev/null, so the exit flush cannot fail either
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        except (OSError, ValueError):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv=None) -> int:
    if not isinstance(sys.stdout, _QuietWhenClosed):
        sys.stdout = _QuietWhenClosed(sys.stdout)
    parser = build_parser()
    args = parser.parse_args(argv)
    from .hostmem import tune_allocator  # noqa: PLC0415

    tune_allocator()  # reuse freed pages between steps (see hostmem.py); MINIROBUST_MALLOC_TUNING=0 skips
    try:
        if getattr(args, "backend", None):
            from .backend import set_backend  # noqa: PLC0415

            set_backend(args.backend)
        rc = args.func(args)
    except MinirobustError as exc:
        print(f"minirobust {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
