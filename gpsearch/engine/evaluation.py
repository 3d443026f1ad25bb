"""One generation's candidates -> fitness: dedup, exact fingerprints, staged scoring (no torch).

    key hit          the canonical key was scored before: its record is reused
    hurdle           (``cfg.hurdle`` > 0) the backend's cheap proxy of each new key
                     (``backend.proxy_many``: masks of a few linears, no forward pass); one above
                     ``hurdle`` x the reference tree's proxy is rejected: PENALTY, "hurdle" in the
                     log with its proxy; seeds always pass, a candidate without a proxy goes on.
                     It comes before the fingerprint, which computes every linear's masks under
                     every condition: a rejected candidate never pays for them
    fingerprint      the backend hashes the candidate's whole masks on the real features
                     (``backend.fingerprint_many``); equal masks = the same pruned model, so an
                     equal fingerprint reuses the record exactly; "invalid: ..." = penalty
    stage 1          every remaining candidate is scored on the first stage's windows
    stage k > 1      the best ``fraction`` of this generation's new candidates (by stage k-1),
                     among those that could still enter the hall of fame (stage k-1 score not
                     worse than the hall's size-th best at stage k-1), are scored on the windows
                     stage k adds; per-window values are summed into the stage-k score

``record["fitness"]`` is the FIRST stage's score: selection compares every tree on the same
windows. The hall of fame holds trees that reached the LAST stage, ranked by it. Without stages
(``cfg.stages`` empty: a backend with no window support) a candidate's fitness is the backend's.
"""

from __future__ import annotations

from gpsearch.engine.result import PENALTY, fitness_level, fitness_of
from gpsearch.errors import BackendLost
from gpsearch.fitness.stages import Stage, promoted, score_of


def capped_scores(values: dict, kind: str) -> tuple[float, float]:
    """(score, ppl) of per-window values ({"nll": [...], "kl": [...]}), each capped at
    MAX_FITNESS (``fitness_of``)."""
    return (fitness_of(score_of(kind, values["kl" if kind == "kl" else "nll"])),
            fitness_of(score_of("ppl", values["nll"])))


class GenerationEvaluator:
    """Evaluates one generation's individuals for ``searcher`` (updates its cache and hall)."""

    def __init__(self, searcher):
        self.s = searcher
        self.stages: list[Stage] = [Stage(int(w), float(f)) for w, f in searcher.cfg.stages]
        self.fp_errors: dict[str, str] = {}  # expr -> why its fingerprint failed

    # ---- dedup --------------------------------------------------------------------------------
    def fingerprints(self, exprs: list[str]) -> list[str | None]:
        """The backend's exact mask fingerprints. When the batch call fails, each candidate is
        fingerprinted alone, so that one bad candidate does not turn dedup off for the whole
        generation; a candidate whose own call fails gets None (it is evaluated in full), is
        counted in ``counters["fp_failed"]`` and its log record says why."""
        backend = self.s.backend
        if not hasattr(backend, "fingerprint_many"):
            return [self.s.services.fingerprint(e) for e in exprs]
        fps = self._fingerprint_call(exprs)
        if isinstance(fps, list):
            return fps
        out = []
        for e in exprs:
            one = self._fingerprint_call([e]) if len(exprs) > 1 else fps
            if isinstance(one, list):
                out.append(one[0])
            else:
                out.append(None)
                self.fp_errors[e] = one
                self.s.counters["fp_failed"] += 1
        return out

    def _fingerprint_call(self, exprs: list[str]) -> list | str:
        """The fingerprints of ``exprs``, or the reason the call failed (one line)."""
        try:
            fps = list(self.s.backend.fingerprint_many(exprs))
        except BackendLost:
            raise
        except Exception as e:  # noqa: BLE001 - recorded; the candidates are just evaluated
            return f"{type(e).__name__}: {e}".splitlines()[0][:200]
        if len(fps) != len(exprs):
            return f"the backend returned {len(fps)} fingerprints for {len(exprs)} trees"
        return fps

    def run(self, inds, gen: int) -> None:
        s = self.s
        hits, first, seconds = {}, {}, {}  # index -> hit kind; key -> expr of first occurrence
        for i, ind in enumerate(inds):
            s.counters["candidates"] += 1
            if ind.key in s.cache or ind.key in first:
                hits[i] = "key"
            else:
                first[ind.key] = str(ind)
        seeds = {ind.key for ind in inds if ind.origin.get("op") == "seed"}
        keys, hurdled, proxies = self.hurdle(list(first), first, seeds, gen)
        s._progress(gen, f"fingerprints of {len(keys)} new trees")
        fps = dict(zip(keys, self.fingerprints([first[k] for k in keys])))
        todo, alias, invalid = [], {}, set()  # keys to score; key -> key it shares a record with
        fp_owner = {}
        for key in keys:
            fp = fps[key]
            if fp and fp.startswith("invalid:"):
                s.cache[key] = {"expr": first[key], "fitness": PENALTY, "ppl": None,
                                "error": fp[len("invalid:"):].strip(), "fingerprint": None}
                invalid.add(key)
                continue
            owner = (s.fp_index.get(fp) or fp_owner.get(fp)) if fp else None
            if owner is not None:
                alias[key] = owner
            else:
                todo.append(key)
                if fp:
                    fp_owner[fp] = key
        self._score(todo, first, fps, seconds, gen)
        for key in todo:
            if proxies.get(key) is not None:
                s.cache[key]["proxy"] = proxies[key]
        for key, owner in alias.items():
            s.cache[key] = {**s.cache[owner], "expr": first[key], "via": owner}
        for i, ind in enumerate(inds):
            kind = hits.get(i)
            if kind is None and ind.key in alias:
                kind = "fingerprint"
            elif kind is None and ind.key in invalid:
                kind = "invalid"
            elif kind is None and ind.key in hurdled:
                kind = "hurdle"
            s.counters["key_hits"] += kind == "key"
            s.counters["fp_hits"] += kind == "fingerprint"
            s.counters["invalid"] += kind == "invalid"
            rec = s.cache[ind.key]
            ind.fitness = rec["fitness"]
            if kind is None and first.get(ind.key) in self.fp_errors:
                rec = {**rec, "fingerprint_error": self.fp_errors[first[ind.key]]}
            s._emit(ind, rec, kind, gen, 0.0 if kind else seconds.get(ind.key, 0.0))

    # ---- the hurdle ---------------------------------------------------------------------------
    def hurdle(self, todo: list[str], first: dict, exempt: set,
               gen: int) -> tuple[list[str], set, dict]:
        """(keys still to fingerprint and score, keys rejected, key -> proxy) for the new
        candidates ``todo``."""
        s = self.s
        if not s.cfg.hurdle or not todo or not hasattr(s.backend, "proxy_many"):
            return todo, set(), {}
        if s.hurdle_bar is None:
            ref = self._proxies([s.cfg.hurdle_reference])[0]
            # no reference proxy (a space without X, a failing backend): nothing is rejected
            s.hurdle_bar = s.cfg.hurdle * ref if ref is not None else float("inf")
        s._progress(gen, f"hurdle: proxies of {len(todo)} trees")
        proxies = dict(zip(todo, self._proxies([first[k] for k in todo])))
        kept, rejected = [], set()
        for key in todo:
            p = proxies[key]
            if p is not None and p > s.hurdle_bar and key not in exempt:
                s.cache[key] = {"expr": first[key], "fitness": PENALTY, "ppl": None,
                                "error": None, "fingerprint": None, "proxy": p}
                rejected.add(key)
                s.counters["hurdled"] += 1
            else:
                kept.append(key)
        return kept, rejected, proxies

    def _proxies(self, exprs: list[str]) -> list[float | None]:
        """The backend's proxies; None for each when the call fails (they are evaluated)."""
        try:
            out = list(self.s.backend.proxy_many(exprs))
        except BackendLost:
            raise
        except Exception:  # noqa: BLE001 - a failing proxy costs evaluations, not the search
            return [None] * len(exprs)
        if len(out) != len(exprs):
            return [None] * len(exprs)
        return [float(p) if isinstance(p, (int, float)) and p == p else None for p in out]

    # ---- scoring ------------------------------------------------------------------------------
    def _score(self, todo: list[str], first: dict, fps: dict, seconds: dict, gen: int) -> None:
        s = self.s
        if not self.stages:
            for key, res in zip(todo, s._run_backend([first[k] for k in todo])):
                self._record(key, first[key], fps.get(key), res, seconds)
                if res.ok:
                    s._add_to_hof(key, gen)
            return
        alive = []
        w0 = self.stages[0].windows
        s._progress(gen, f"stage 1: {len(todo)} trees x {w0} windows")
        s.counters["windows"] += w0 * len(todo)
        for key, res in zip(todo, s._run_backend([first[k] for k in todo], (0, w0))):
            self._record(key, first[key], fps.get(key), res, seconds)
            if res.ok:
                alive.append(key)
        for k in range(1, len(self.stages)):
            prev, stage = self.stages[k - 1], self.stages[k]
            alive = self._promote(alive, k - 1, promoted(len(todo), stage.fraction))
            exprs = [first[key] for key in alive]
            s._progress(gen, f"stage {k + 1}: {len(exprs)} trees x {stage.windows - prev.windows} "
                             "more windows")
            ok = []
            s.counters["later_evals"] += len(exprs)
            s.counters["windows"] += (stage.windows - prev.windows) * len(exprs)
            for key, res in zip(alive, s._run_backend(exprs, (prev.windows, stage.windows))):
                seconds[key] = seconds.get(key, 0.0) + res.seconds
                if res.ok:
                    self._extend(key, res)
                    ok.append(key)
                else:  # failed on later windows: stays at the earlier stage
                    s.cache[key]["error"] = res.error
            alive = ok
        for key in todo:
            if len(s.cache[key].get("stages", [])) == len(self.stages):
                s._add_to_hof(key, gen)

    def _record(self, key, expr, fp, res, seconds) -> None:
        s = self.s
        s.counters["evaluated"] += 1
        s.counters["failed"] += not res.ok
        seconds[key] = res.seconds
        rec = {"expr": expr, "fitness": float(res.fitness), "ppl": res.ppl, "error": res.error,
               "fingerprint": fp}
        if self.stages and res.ok:
            rec["values"] = {k: list(res.extra[k]) for k in ("nll", "kl") if k in res.extra}
            rec["stages"] = [self._stage_entry(rec["values"])]
            rec["fitness"] = rec["stages"][0]["score"]
        s.cache[key] = rec
        if fp and res.ok:
            s.fp_index[fp] = key

    def _stage_entry(self, values: dict) -> dict:
        score, ppl = capped_scores(values, self.s.cfg.fitness)
        return {"windows": len(values["nll"]), "score": score, "ppl": ppl}

    def _extend(self, key: str, res) -> None:
        rec = self.s.cache[key]
        for k in rec["values"]:
            rec["values"][k] = rec["values"][k] + list(res.extra[k])
        rec["stages"].append(self._stage_entry(rec["values"]))

    def _promote(self, keys: list[str], stage: int, n: int) -> list[str]:
        """The best n of ``keys`` at ``stage`` that could still enter the hall of fame."""
        s = self.s
        score = lambda k: s.cache[k]["stages"][stage]["score"]  # noqa: E731
        reached = sorted(rec["stages"][stage]["score"] for rec in s.cache.values()
                         if "via" not in rec and len(rec.get("stages", [])) > stage)
        bar = reached[s.cfg.hof_size - 1] if len(reached) >= s.cfg.hof_size else float("inf")
        eligible = sorted((k for k in keys if score(k) <= bar),
                          key=lambda k: (fitness_level(score(k)), k))
        return eligible[:n]
