"""Collaborative matching learned from everyone's events: item-to-item and user-item.

Every engagement (an event whose graded feedback is positive: a view, a like, a share…)
enters one user × item interaction table as a confidence, the strongest feedback the
user gave the item (a like that arrives with its view counts once, not twice). Two
models are fitted from that table, together, by ``Collaborative.refresh``:

- **Item-to-item (ItemKNN).** Cosine similarity of items' engagement columns over all
  users (``Xᵀ X`` normalised; scipy sparse), keeping each item's ``knn_neighbours``
  strongest neighbours as one sparse matrix ``S``. A user's scores are ``x_u S`` over
  the user's most recent ``collaborative_history`` engagements: one sparse product.
- **User-item embeddings (implicit ALS).** Hu, Koren & Volinsky's weighted matrix
  factorisation (confidence ``1 + alpha · feedback``), solved with numpy by alternating
  least squares, warm-started from the previous fit. Item factors are served by the same
  ``VectorIndex`` (faiss) as the content vectors, through the standard reduction of
  inner-product search to cosine search (Bachrach et al., 2014: each item vector gets one
  extra coordinate so that all have the same norm).

Both are online on the user side: a user's scores are computed at request time from
that user's interactions as they are now (the ALS user factor is folded in with the
current item factors: one ``f × f`` solve), so an event changes the user's next feed at
once. The item side (``S`` and the item factors) is refitted from the table when
``collaborative_refresh_events`` new engagements have arrived, on a background thread
in serving (``maybe_refresh``), synchronously when asked (``refresh``); the fit being
served is swapped in whole, so a request never sees half a model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from itertools import islice

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from scipy import sparse
from threadpoolctl import threadpool_limits

from recommender.catalog import index_options
from recommender.settings import RecommenderSettings
from recommender.vector_index import VectorIndex

log = logging.getLogger(__name__)
MODEL_ID = "reelsift.collaborative.als"


@dataclass(frozen=True)
class CollaborativeFit:
    """One fit, immutable once published."""

    version: int
    item_ids: list[str]
    row_of: dict[str, int]
    similarity: sparse.csr_matrix  # (items, items) top-k cosine neighbours per row
    ease: sparse.csr_matrix | None  # (items, items) EASE weights, top-k per row; None: off
    factors: np.ndarray  # (items, f) ALS item factors
    gram: np.ndarray  # factorsᵀ factors, for folding users in
    index: VectorIndex | None  # the item factors, for inner-product search
    max_norm: float

    def rows(self, history: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        get = self.row_of.get
        pairs = [(r, w) for r, w in ((get(i), w) for i, w in history.items()) if r is not None]
        if not pairs:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        rows, weights = zip(*pairs, strict=True)
        return np.asarray(rows, np.int64), np.asarray(weights, np.float64)


class Collaborative:
    """The interaction table, the fit being served, and the user-side scoring."""

    def __init__(self, settings: RecommenderSettings) -> None:
        self.settings = settings
        self._users: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()
        self._refit_lock = threading.Lock()
        self._refitting = False
        self.fit: CollaborativeFit | None = None
        self._pending = 0  # engagements since the last fit
        self._version = 0

    # -- events -------------------------------------------------------------------------
    def engage(self, user_id: str, item_id: str, feedback: float) -> None:
        """One engagement: the pair's confidence is the strongest feedback seen."""
        if feedback <= 0:
            return
        with self._lock:
            row = self._users.setdefault(user_id, {})
            old = row.get(item_id)
            if old is None:
                self._pending += 1
            row[item_id] = max(old or 0.0, min(feedback, self.settings.collaborative.max_feedback))

    def disengage(self, user_id: str, item_id: str) -> None:
        """A hide or report: the item no longer speaks for the user's taste."""
        with self._lock:
            row = self._users.get(user_id)
            if row is not None and row.pop(item_id, None) is not None:
                self._pending += 1

    def history(self, user_id: str) -> dict[str, float]:
        """The user's most recent ``history`` engagements (item -> feedback)."""
        row = self._users.get(user_id)
        if not row:
            return {}
        limit = self.settings.collaborative.history
        with self._lock:
            if len(row) <= limit:
                return dict(row)
            recent = list(islice(reversed(row), limit))
            return {i: row[i] for i in recent}

    @property
    def pending(self) -> int:
        return self._pending

    # -- fitting ------------------------------------------------------------------------
    def maybe_refresh(self, *, background: bool = True) -> bool:
        """Refit once enough new engagements arrived; in a thread unless told otherwise."""
        c = self.settings.collaborative
        due = self._pending >= (c.refresh_events if self.fit is not None else c.min_events)
        if not due or self._refitting:
            return False
        if not background:
            self.refresh()
            return True
        self._refitting = True

        def run() -> None:
            try:
                self.refresh()
            except Exception:  # the previous fit keeps serving; retried on the next events
                log.exception("collaborative refit failed")
            finally:
                self._refitting = False

        threading.Thread(target=run, name="collaborative-refit", daemon=True).start()
        return True

    def refresh(self) -> CollaborativeFit | None:
        """Fit both models on the table as it is now and publish them."""
        with self._refit_lock:
            with self._lock:
                pending = self._pending
                users = [(u, list(row.items())) for u, row in self._users.items() if row]
            fit = self._fit(users)
            with self._lock:
                self._pending = max(0, self._pending - pending)
            if fit is not None:
                self.fit = fit
            return fit

    def _fit(self, users: list[tuple[str, list[tuple[str, float]]]]) -> CollaborativeFit | None:
        c = self.settings.collaborative
        row_of: dict[str, int] = {}
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        for _user, pairs in users:
            for item_id, feedback in pairs:
                indices.append(row_of.setdefault(item_id, len(row_of)))
                data.append(feedback)
            indptr.append(len(indices))
        if len(row_of) < 2 or not indices:
            return None
        n_items = len(row_of)
        feedback_matrix = sparse.csr_matrix(
            (np.asarray(data), np.asarray(indices), np.asarray(indptr)),
            shape=(len(users), n_items))
        similarity = item_knn(feedback_matrix, c.knn_neighbours, c.knn_shrink)
        # EASE's lambda is set for hundreds of users; on fewer, B is little more than a
        # popularity-weighted co-count (kNN and ALS cover small logs)
        ease = (ease_on_most_engaged(feedback_matrix, c.ease_lambda, c.ease_neighbours,
                                     c.ease_max_items)
                if len(users) >= c.ease_min_users and c.ease_max_items > 0 else None)
        previous = self.fit
        warm: np.ndarray | None = None
        if previous is not None and previous.factors.shape[1] == c.factors:
            warm = np.zeros((n_items, c.factors), np.float32)
            for item_id, r in row_of.items():
                old = previous.row_of.get(item_id)
                if old is not None:
                    warm[r] = previous.factors[old]
        factors = implicit_als(
            feedback_matrix, c.factors, regularisation=c.regularisation, alpha=c.alpha,
            iterations=c.iterations if warm is None else c.warm_iterations,
            seed=self.settings.seed, item_factors=warm,
        )
        item_ids = list(row_of)
        norms = np.linalg.norm(factors, axis=1)
        max_norm = float(norms.max()) if len(norms) else 1.0
        index: VectorIndex | None = None
        if max_norm > 0:
            index = VectorIndex(c.factors + 1, MODEL_ID, **index_options(self.settings))
            index.add(item_ids, mips_items(factors, max_norm))
        self._version += 1
        return CollaborativeFit(
            version=self._version, item_ids=item_ids, row_of=row_of,
            similarity=similarity, ease=ease, factors=factors,
            gram=(factors.T.astype(np.float64) @ factors.astype(np.float64)),
            index=index, max_norm=max_norm,
        )

    # -- serving ------------------------------------------------------------------------
    def knn(self, user_id: str, limit: int, exclude: Collection[str]) -> list[tuple[str, float]]:
        """Items most similar to the user's recent engagements, weighted by feedback."""
        fit = self.fit
        history = self.history(user_id)
        if fit is None or not history:
            return []
        rows, weights = fit.rows(history)
        if not len(rows):
            return []
        scores = weighted_row_sum(fit.similarity, rows, weights)
        return _top_excluding(scores, fit.item_ids, limit, exclude)

    def ease(self, user_id: str, limit: int, exclude: Collection[str]) -> list[tuple[str, float]]:
        """EASE scores ``x_u B`` of the user's recent engagements (binary, as fitted)."""
        fit = self.fit
        history = self.history(user_id)
        if fit is None or fit.ease is None or not history:
            return []
        rows, _ = fit.rows(history)
        if not len(rows):
            return []
        scores = weighted_row_sum(fit.ease, rows, np.ones(len(rows)))
        return _top_excluding(scores, fit.item_ids, limit, exclude)

    def user_factor(self, user_id: str) -> np.ndarray | None:
        """The ALS user factor folded in from the user's current engagements."""
        fit = self.fit
        history = self.history(user_id)
        if fit is None or not history:
            return None
        rows, weights = fit.rows(history)
        if not len(rows):
            return None
        c = self.settings.collaborative
        return fold_in(fit.factors[rows], weights, fit.gram, c.regularisation, c.alpha)

    def mf(self, user_id: str, limit: int, exclude: Collection[str]) -> list[tuple[str, float]]:
        """Items with the largest predicted preference ``user · item`` (ANN search)."""
        fit = self.fit
        vector = self.user_factor(user_id)
        if fit is None or vector is None or fit.index is None:
            return []
        query = np.append(vector, 0.0).astype(np.float32)
        norm = float(np.linalg.norm(query))
        if norm <= 0:
            return []
        hits = fit.index.search(query / norm, limit, exclude=exclude)
        # back to the inner product (the index returns cosine with the padded item)
        scale = norm * fit.max_norm
        return [(i, s * scale) for i, s in hits]


def weighted_row_sum(
    matrix: sparse.csr_matrix, rows: np.ndarray, weights: np.ndarray,
) -> np.ndarray:
    """``weights @ matrix[rows]`` as a dense vector, read straight from the CSR arrays
    (a few dozen microseconds; scipy's row slicing builds two matrices per request)."""
    starts, ends = matrix.indptr[rows], matrix.indptr[rows + 1]
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(matrix.shape[1])
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    positions = offsets + np.arange(total)
    return np.bincount(matrix.indices[positions],
                       weights=matrix.data[positions] * np.repeat(weights, lengths),
                       minlength=matrix.shape[1])


def mips_items(factors: np.ndarray, max_norm: float) -> np.ndarray:
    """Item vectors padded to the same norm: cosine search with ``[u, 0]`` then ranks by
    ``u · y`` (the MIPS-to-nearest-neighbour reduction)."""
    scaled = factors.astype(np.float64) / max_norm
    pad = np.sqrt(np.maximum(0.0, 1.0 - (scaled * scaled).sum(axis=1)))
    return np.hstack([scaled, pad[:, None]]).astype(np.float32)


def _top_excluding(
    scores: np.ndarray, item_ids: list[str], limit: int, exclude: Collection[str],
) -> list[tuple[str, float]]:
    positive = np.flatnonzero(scores > 0)
    if not len(positive):
        return []
    want = min(len(positive), limit + len(exclude))
    part = positive[np.argpartition(-scores[positive], want - 1)[:want]]
    part = part[np.argsort(-scores[part], kind="stable")]
    out: list[tuple[str, float]] = []
    for r in part.tolist():
        item_id = item_ids[r]
        if item_id not in exclude:
            out.append((item_id, float(scores[r])))
            if len(out) >= limit:
                break
    return out


def item_knn(feedback: sparse.csr_matrix, neighbours: int, shrink: float) -> sparse.csr_matrix:
    """Cosine similarity of binary engagement columns, top ``neighbours`` per item."""
    binary = feedback.copy()
    binary.data = np.ones_like(binary.data)
    binary = binary.tocsc().astype(np.float32)
    co = (binary.T @ binary).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    counts = np.asarray(binary.sum(axis=0)).ravel().astype(np.float64)
    norms = np.sqrt(counts)
    co = co.tocoo()
    values = co.data / (norms[co.row] * norms[co.col] + shrink)
    sim = sparse.csr_matrix((values.astype(np.float32), (co.row, co.col)), shape=co.shape)
    return top_k_per_row(sim, neighbours)


def ease_on_most_engaged(
    feedback: sparse.csr_matrix, lam: float, neighbours: int, max_items: int,
) -> sparse.csr_matrix | None:
    """EASE over the ``max_items`` items engaged by most users, at least two each (an item
    one user engaged shares no co-engagement to learn from), as an (items, items) matrix
    in ``feedback``'s column order; None when fewer than two items qualify.

    The dense inverse is cubic in the items it covers: on a 100k catalog whose 500
    users each engaged a few dozen items, inverting all 11k engaged items took minutes
    per refit on every serving process; the ones that co-occur are a few hundred."""
    users_per_item = np.diff(feedback.tocsc().indptr)
    eligible = np.flatnonzero(users_per_item >= 2)
    if len(eligible) < 2:
        return None
    if len(eligible) > max_items:
        by_users = np.argsort(-users_per_item[eligible], kind="stable")[:max_items]
        eligible = np.sort(eligible[by_users])
    sub = ease_weights(feedback[:, eligible].tocsr(), lam, neighbours).tocoo()
    n = feedback.shape[1]
    return sparse.csr_matrix((sub.data, (eligible[sub.row], eligible[sub.col])), shape=(n, n))


def ease_weights(feedback: sparse.csr_matrix, lam: float, neighbours: int) -> sparse.csr_matrix:
    """EASE (Steck 2019) on binary engagement: ``B = -P / diag(P)``, ``P = (XᵀX + λI)⁻¹``,
    zero diagonal; each item keeps its ``neighbours`` largest weights (by magnitude) so
    serving reads a sparse matrix."""
    binary = feedback.copy()
    binary.data = np.ones_like(binary.data, dtype=np.float32)
    # float32 and in place: at 12k items each n x n matrix is 0.6 GB
    gram = (binary.T @ binary).astype(np.float32).toarray()
    gram[np.diag_indices_from(gram)] += lam
    weights = np.linalg.inv(gram)
    del gram
    diagonal = np.diag(weights).copy()
    weights /= -diagonal
    weights[np.diag_indices_from(weights)] = 0.0
    n = weights.shape[0]
    k = min(neighbours, n - 1)
    if k <= 0:
        return sparse.csr_matrix((n, n), dtype=np.float32)
    keep = np.argpartition(-np.abs(weights), k - 1, axis=1)[:, :k]
    rows = np.repeat(np.arange(n), k)
    values = weights[rows, keep.ravel()]
    return sparse.csr_matrix((values.astype(np.float32), (rows, keep.ravel())), shape=(n, n))


def top_k_per_row(matrix: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    matrix = matrix.tocsr()
    matrix.sort_indices()
    indptr = matrix.indptr
    lengths = np.diff(indptr)
    if not len(lengths) or lengths.max(initial=0) <= k:
        return matrix
    keep = np.zeros(matrix.nnz, dtype=bool)
    for r in np.flatnonzero(lengths).tolist():
        start, end = indptr[r], indptr[r + 1]
        if end - start <= k:
            keep[start:end] = True
        else:
            best = np.argpartition(-matrix.data[start:end], k - 1)[:k]
            keep[start + best] = True
    rows = np.repeat(np.arange(matrix.shape[0]), lengths)[keep]
    return sparse.csr_matrix(
        (matrix.data[keep], (rows, matrix.indices[keep])), shape=matrix.shape)


def fold_in(
    item_factors: np.ndarray, feedback: np.ndarray, gram: np.ndarray, regularisation: float,
    alpha: float,
) -> np.ndarray:
    """The least-squares user factor for fixed item factors (one ALS half-step)."""
    y = item_factors.astype(np.float64)
    confidence = 1.0 + alpha * feedback
    a = gram + (y.T * (confidence - 1.0)) @ y + regularisation * np.eye(y.shape[1])
    b = y.T @ confidence
    return np.linalg.solve(a, b).astype(np.float32)


def implicit_als(
    feedback: sparse.csr_matrix, factors: int, *, regularisation: float, alpha: float,
    iterations: int, seed: int = 0, item_factors: np.ndarray | None = None,
) -> np.ndarray:
    """Item factors of implicit-feedback ALS (Hu, Koren & Volinsky 2008), solved by the
    ``implicit`` library's compiled conjugate-gradient solver (Takács et al. 2011; three
    steps from the previous sweep's factors, the library's default) on one thread: 0.4 s
    where the numpy row-by-row exact solve this replaced took 14 s (500 users, 11k
    items, 12 sweeps), and it releases the GIL, so a refit on a serving
    process does not stall its requests. ``implicit`` weighs a positive by its matrix
    value ``c`` as ``c - 1`` in the Gram term and ``c`` in the target, so the matrix holds
    ``1 + alpha * feedback``: the paper's confidence, as ``fold_in`` uses it."""
    confidence = feedback.astype(np.float32, copy=True).tocsr()
    confidence.data = 1.0 + alpha * confidence.data
    # one BLAS thread: the solver is compiled, extra BLAS threads only contend with requests
    # (and implicit warns about them when the model is made)
    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(
            factors=factors, regularization=regularisation, alpha=1.0, iterations=iterations,
            use_cg=True, calculate_training_loss=False, num_threads=1, random_state=seed,
        )
        if item_factors is not None:
            warm = item_factors.astype(np.float32, copy=True)
            missing = ~warm.any(axis=1)
            if missing.any():
                rng = np.random.default_rng(seed)
                warm[missing] = rng.random((int(missing.sum()), factors), dtype=np.float32) * 0.01
            model.item_factors = warm
        model.fit(confidence, show_progress=False)
    return np.asarray(model.item_factors, dtype=np.float32)
