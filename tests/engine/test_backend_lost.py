"""A backend that can evaluate nothing any more (BackendLost) stops the search; any other error
of a backend call only fails the candidates concerned."""

import pytest

from gpsearch.engine.loop import SearchConfig, Searcher, TreeServices
from gpsearch.engine.result import PENALTY
from gpsearch.errors import BackendLost
from tests.engine.test_stages import SEEDS, SPACE, WindowBackend


class Breaking(WindowBackend):
    """Fails every call of ``where`` from generation call ``after`` on, with ``error``."""

    def __init__(self, where, error, after=1):
        super().__init__()
        self.where, self.error, self.after, self.n = where, error, after, 0

    def _maybe(self):
        self.n += 1
        if self.n > self.after:
            raise self.error

    def evaluate_many(self, exprs, windows=None):
        if self.where == "evaluate":
            self._maybe()
        return super().evaluate_many(exprs, windows)

    def fingerprint_many(self, exprs):
        if self.where == "fingerprint":
            self._maybe()
        return super().fingerprint_many(exprs)

    def proxy_many(self, exprs):
        if self.where == "proxy":
            self._maybe()
        return [1.0] * len(exprs)


def make(backend):
    cfg = SearchConfig(population=6, offspring=6, elite=2, seed=3, hurdle=1.5,
                       stages=((2, 1.0), (5, 0.5)))
    return Searcher(SPACE, backend, cfg, TreeServices(), SEEDS)


@pytest.mark.parametrize("where", ["evaluate", "fingerprint", "proxy"])
def test_backend_lost_stops_the_search_after_the_last_complete_generation(where):
    s = make(Breaking(where, BackendLost("no live Ray worker left"), after=2))
    with pytest.raises(BackendLost, match="no live Ray worker left"):
        s.run(4)
    assert 0 <= s.generation < 3  # the failing generation did not complete


def test_another_backend_error_fails_candidates_and_the_search_goes_on():
    s = make(Breaking("evaluate", RuntimeError("worker hiccup"), after=2))
    records = []
    s.on_evaluation.append(records.append)
    s.run(3)
    assert s.generation == 2
    failed = [r for r in records if r["error"] and "worker hiccup" in r["error"]]
    assert failed and all(r["fitness"] == PENALTY for r in failed)
