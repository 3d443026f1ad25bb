"""Pick the evaluation backend from the CLI's plain specs: serial in-process, or Ray actors.

Importing this module never imports Ray; only the Ray branch of ``make_backend`` does.
"""

from __future__ import annotations

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.model.load import EMBEDDED
from gpsearch.pruning.masks import Pattern, parse_pattern


def make_backend(workers: int = 0, address: str | None = None, *, model: str = EMBEDDED,
                 calib: CalibConfig | dict | None = None, ev: EvalConfig | dict | None = None,
                 sparsity: float = 0.5, pattern: str | Pattern = "unstructured",
                 scope: str = "row", mode: str = "dense", dtype: str = "float32",
                 device: str = "cpu", cache_dir=None, progress: bool = False,
                 features: tuple[str, ...] = ("X", "G"), eval_timeout: float | None = None,
                 max_retries: int = 1, resources: str = "auto", evaluator=None,
                 fitness: str = "ppl", topk: int = 512, worker_cls: type | None = None,
                 device_map: str | None = None, gpus_per_worker: int = 1,
                 conditions: list | None = None, reduce: str = "mean",
                 rescale: dict | None = None, allocation: dict | None = None,
                 snapshots: tuple = ()):
    """A backend with ``evaluate_many(exprs) -> list[EvalResult]``, ``evaluate_one`` and ``close``.

    workers, address: ``workers`` in (0, 1) with no ``address`` -> ``SerialBackend`` in this
        process (no Ray); otherwise ``RayBackend`` with max(workers, 1) actors. address None
        starts a local Ray instance; "auto" or "host:port" joins a running cluster.
    model: model spec string (embedded name, local HF directory, .gguf path, hub id); every Ray
        worker loads it itself, so on a cluster it must resolve on every node.
    calib, ev: ``CalibConfig`` / ``EvalConfig`` (or their ``to_dict()``); defaults: the defaults
        of those classes, with the evaluation on the validation split.
    sparsity, pattern, scope, mode: as ``gpsearch prune`` (--sparsity, --pattern text or a
        ``Pattern``, --scope row|matrix, --features dense|sequential).
    dtype, device, cache_dir, progress: as the other commands (--dtype, --device, --cache-dir);
        progress bars only in the serial backend. The feature cache must be on a filesystem all
        nodes share, or each node computes its own features.
    features: feature kinds ("X", "G", "H") computed before evaluation starts: by the first Ray
        actor (the others then load them from the cache) or by the serial evaluator. Pass the
        kinds the search space's terminals use.
    eval_timeout, max_retries, resources: Ray only (see ``RayBackend``): seconds per candidate
        before its worker is killed and it is penalised; retries of a candidate whose worker
        died; "auto" | "gpu" | "cpu" actor placement. The serial backend cannot interrupt an
        evaluation and ignores ``eval_timeout``.
    rescale: terminal -> factor applied before every tree is evaluated (one condition).
    allocation: an ``allocation_run.AllocationSpec`` as a dict (None: every linear at
        ``sparsity``): each candidate is pruned at its layer-wise sparsities.
    evaluator: serial only, an already built ``Evaluator`` to reuse (tests, notebooks).
    snapshots: serial only, smaller calibration sizes whose features the main model's feature
        pass also caches (``features.FeatureStore``): later conditions load them.
    fitness, topk: "ppl" or "kl" (to the dense model, top-``topk`` reference; see ``fitness``).
    worker_cls: Ray only, the actor class (default ``actor.EvalWorker``; tests inject faults
        with a subclass).
    device_map, gpus_per_worker: a model spanning several GPUs (accelerate's "auto" /
        "balanced"); Ray actors then request ``gpus_per_worker`` GPUs each (device_map "auto"
        when it is above 1 and none is given), so N GPUs run N / k resident models.
    conditions, reduce: multi-condition fitness (``multi.MultiConditionBackend``): a list of
        ``search.conditions.Condition`` (model, rescale, seed, nsamples; None or one baseline
        condition: the plain backend) and "mean" | "max". Serial: one resident model per distinct
        model, one backend per condition, run in turn; Ray: the workers split into one group of
        actors per condition (at least one each), the groups run at the same time.
    """
    if conditions and (len(conditions) > 1 or conditions[0].label() != "baseline"):
        return _multi_backend(workers, address, conditions, reduce, dict(
            model=model, calib=calib, ev=ev, sparsity=sparsity, pattern=pattern, scope=scope,
            mode=mode, dtype=dtype, device=device, cache_dir=cache_dir, progress=progress,
            features=features, eval_timeout=eval_timeout, max_retries=max_retries,
            resources=resources, fitness=fitness, topk=topk, worker_cls=worker_cls,
            device_map=device_map, gpus_per_worker=gpus_per_worker, allocation=allocation,
            snapshots=snapshots), evaluator)
    if workers < 0:
        raise UserError(f"--workers must be 0 or more (got {workers})")
    calib = CalibConfig.from_dict(calib) if isinstance(calib, dict) else (calib or CalibConfig())
    if ev is None:
        ev = EvalConfig(data=calib.data, split="validation", seqlen=calib.seqlen)
    ev = EvalConfig.from_dict(ev) if isinstance(ev, dict) else ev
    if isinstance(pattern, Pattern):
        pattern, scope = str(pattern), pattern.scope
    pat = parse_pattern(pattern, sparsity, scope)  # validate here, before any worker starts
    if workers <= 1 and not address:
        from gpsearch.pruning.evaluator import Evaluator
        from gpsearch.workers.serial import SerialBackend

        if evaluator is None:
            evaluator = Evaluator(model, calib, dtype, device, cache_dir, progress,
                                  device_map=device_map)
        evaluator.features.snapshots = tuple(snapshots)
        evaluator.features.get_all(features)
        return SerialBackend(evaluator, sparsity, pat, ev, mode, fitness=fitness, topk=topk,
                             rescale=rescale, allocation=allocation)
    from gpsearch.workers.ray_backend import RayBackend

    return RayBackend(model, calib, ev, sparsity, pattern, scope, mode, dtype, device, cache_dir,
                      workers=max(workers, 1), address=address, eval_timeout=eval_timeout,
                      max_retries=max_retries, resources=resources, features=tuple(features),
                      fitness=fitness, topk=topk, gpus_per_worker=gpus_per_worker,
                      device_map=device_map, rescale=rescale, allocation=allocation,
                      **({"worker_cls": worker_cls} if worker_cls else {}))


def _condition_calib(calib: CalibConfig, c) -> CalibConfig:
    import dataclasses

    changes = {k: v for k, v in (("nsamples", c.nsamples), ("seed", c.seed)) if v is not None}
    return dataclasses.replace(calib, **changes) if changes else calib


def _multi_backend(workers, address, conditions, reduce, kw: dict, evaluator=None):
    """One backend per condition, combined (see ``multi``)."""
    from gpsearch.workers.multi import MultiConditionBackend

    calib = kw["calib"]
    calib = CalibConfig.from_dict(calib) if isinstance(calib, dict) else (calib or CalibConfig())
    kw["calib"] = calib
    main_model, backends, labels = kw["model"], [], []
    ray = workers > 1 or bool(address)
    try:
        if ray:  # one group of actors per condition (the Ray backend even for one actor)
            from gpsearch.workers.ray_backend import RayBackend

            per = max(1, workers // len(conditions))
            pattern, scope = kw["pattern"], kw["scope"]
            if isinstance(pattern, Pattern):
                pattern, scope = str(pattern), pattern.scope
            ev = kw["ev"] or EvalConfig(data=calib.data, split="validation", seqlen=calib.seqlen)
            for c in conditions:
                extra = {"worker_cls": kw["worker_cls"]} if kw["worker_cls"] else {}
                backends.append(RayBackend(
                    c.model or main_model, _condition_calib(calib, c), ev, kw["sparsity"],
                    pattern, scope, kw["mode"], kw["dtype"], kw["device"], kw["cache_dir"],
                    workers=per, address=address, eval_timeout=kw["eval_timeout"],
                    max_retries=kw["max_retries"], resources=kw["resources"],
                    features=tuple(kw["features"]), fitness=kw["fitness"], topk=kw["topk"],
                    gpus_per_worker=kw["gpus_per_worker"], device_map=kw["device_map"],
                    rescale=c.factors, placement_workers=per * len(conditions),
                    allocation=kw["allocation"], **extra))
                labels.append(c.label())
            return MultiConditionBackend(backends, labels, kw["fitness"], reduce, parallel=True)
        from gpsearch.pruning.evaluator import Evaluator
        from gpsearch.workers.serial import SerialBackend

        evaluators = {}
        if evaluator is not None:
            evaluators[main_model] = evaluator
        pat = parse_pattern(str(kw["pattern"]), kw["sparsity"],
                            kw["pattern"].scope if isinstance(kw["pattern"], Pattern)
                            else kw["scope"])
        ev = kw["ev"] or EvalConfig(data=calib.data, split="validation", seqlen=calib.seqlen)
        ev = EvalConfig.from_dict(ev) if isinstance(ev, dict) else ev
        for c in conditions:
            model = c.model or main_model
            if model not in evaluators:
                evaluators[model] = Evaluator(model, calib, kw["dtype"], kw["device"],
                                              kw["cache_dir"], kw["progress"],
                                              device_map=kw["device_map"])
                evaluators[model].features.snapshots = tuple(kw["snapshots"])
            fc = _condition_calib(calib, c)
            b = SerialBackend(evaluators[model], kw["sparsity"], pat, ev, kw["mode"],
                              fitness=kw["fitness"], topk=kw["topk"], rescale=c.factors,
                              feature_calib=fc if fc != calib else None,
                              allocation=kw["allocation"])
            b.prepare(kw["features"])
            backends.append(b)
            labels.append(c.label())
    except BaseException:
        for b in backends:
            b.close()
        raise
    return MultiConditionBackend(backends, labels, kw["fitness"], reduce,
                                 evaluator=evaluators.get(main_model))
