"""The hierarchical classifier: items (text, images, video keyframes) to category labels.

Scoring, for a batch of item vectors and all N nodes at once:

1. similarities: one product with the node prototypes, one with every node text (best
   text per node by a segment max), blended;
2. skip connections: each node is lifted to ``child_weight`` × its best descendant, so a
   strong leaf can carry a weakly worded parent;
3. calibration: per-tier logistic on the node's z-score and its margin below the best
   sibling (the top-down competition within each parent), giving a logit per node;
4. supervised heads, where trained, replace the logits of their nodes;
5. modalities (text, images) are fused by a weighted maximum of probabilities;
6. top-down gating: a child's confidence is capped by its parent's, so a child is never
   returned without a plausible parent, and every thresholded set is ancestor-closed.

Steps 1-6 are array operations (loops run over tiers, never nodes). Selecting labels
per item then keeps nodes above ``min_confidence``, ranks the deepest ones, and returns
the ``max_labels`` best paths, each leaf with all of its ancestors. Several paths can
pass, so output is multi-label.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from analyzers.base import JointTextImageEmbedder, TextEmbedder
from core.artifacts import CONFIG_FILE
from core.contracts import Label, weights_id
from core.errors import InvalidConfig, InvalidInput
from taxonomy.calibration import Calibration, calibration_for, fit_calibration, logits
from taxonomy.documents import ChunkSettings, DocumentEmbedder, VectorCache
from taxonomy.heads import NONE_CLASS, RootHead, SupervisedHeads, TopicGate, WordHead
from taxonomy.hierarchy import gate_top_down, lift, sigmoid
from taxonomy.node_index import NodeIndex, build_node_index
from taxonomy.tree import DATA_DIR, TaxonomyTree

log = logging.getLogger(__name__)

SHIPPED_HEADS = DATA_DIR / "heads"


@dataclass(frozen=True)
class ClassifierSettings:
    max_labels: int = 3  # label paths per item; each path is a leaf plus its ancestors
    min_confidence: float = 0.3
    tiers: tuple[int, ...] | None = None  # tiers to return; None returns every tier
    prototype_weight: float = 0.5  # prototype vs best single node text
    child_weight: float = 0.8  # strength of the skip connections
    text_weight: float = 1.0  # modality weights in the fusion
    image_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.max_labels < 1:
            raise InvalidConfig(f"max_labels must be at least 1, got {self.max_labels}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise InvalidConfig(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if self.tiers is not None and (not self.tiers or min(self.tiers) < 1):
            raise InvalidConfig(f"tiers must be positive tier numbers, got {self.tiers}")
        if not 0.0 <= self.child_weight <= 1.0 or not 0.0 <= self.prototype_weight <= 1.0:
            raise InvalidConfig("child_weight and prototype_weight must be in [0, 1]")
        if self.text_weight < 0 or self.image_weight < 0:
            raise InvalidConfig("modality weights must be non-negative")


@dataclass(frozen=True)
class Keyframe:
    """One video frame's vector (from ``JointTextImageEmbedder.encode_images``) and its time."""

    timestamp_ms: int
    vector: np.ndarray


@dataclass
class Scores:
    """Per-node arrays for a batch, kept for evaluation and debugging."""

    confidence: np.ndarray  # (n, N) gated probabilities
    probability: np.ndarray = field(repr=False)  # (n, N) fused, before gating


class TaxonomyClassifier:
    def __init__(
        self,
        tree: TaxonomyTree | None = None,
        text_embedder: TextEmbedder | None = None,
        *,
        image_embedder: JointTextImageEmbedder | None = None,
        cache_dir: str | Path | None = None,
        heads: SupervisedHeads | None = None,
        settings: ClassifierSettings | None = None,
        text_calibration: Calibration | None = None,
        image_calibration: Calibration | None = None,
    ) -> None:
        if text_embedder is None and image_embedder is None:
            raise InvalidConfig(
                "a taxonomy classifier needs a text embedder, an image one, or both"
            )
        self.tree = tree or TaxonomyTree.default()
        self.text_embedder = text_embedder
        self.image_embedder = image_embedder
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.settings = settings or ClassifierSettings()
        self.heads: SupervisedHeads | None = None
        self._documents: DocumentEmbedder | None = None
        self.vector_cache: VectorCache | None = None  # chunk vectors on disk (training, eval)
        self._arrays = self.tree.arrays
        self._index_of = {node_id: i for i, node_id in enumerate(self.tree.ids)}
        self._heads_columns: np.ndarray | None = None
        self._root_columns = {
            node_id: i for i, node_id in enumerate(self.tree.ids) if self._arrays.tier[i] == 1
        }
        tree_name = self.tree.name
        self.text_calibration = text_calibration or (
            calibration_for(text_embedder.model.name, tree_name) if text_embedder else None
        )
        self.image_calibration = image_calibration or (
            calibration_for(image_embedder.model.name, tree_name) if image_embedder else None
        )
        if heads is not None:
            self.set_heads(heads)

    @classmethod
    def load(
        cls,
        text_embedder: TextEmbedder | None = None,
        *,
        tree: TaxonomyTree | str | Path | None = None,
        heads_dir: str | Path | None = None,
        image_embedder: JointTextImageEmbedder | None = None,
        cache_dir: str | Path | None = None,
        settings: ClassifierSettings | None = None,
        use_shipped_heads: bool = True,
    ) -> TaxonomyClassifier:
        """The pipeline's entry point: default IAB tree unless a tree or tree file is given.

        Heads: ``heads_dir`` when given (and they must fit the tree and model); otherwise
        the shipped heads when they were trained for this tree and this text model;
        otherwise none (zero-shot). ``use_shipped_heads=False`` forces zero-shot.
        """
        if tree is None:
            resolved = TaxonomyTree.default()
        elif isinstance(tree, TaxonomyTree):
            resolved = tree
        else:
            resolved = TaxonomyTree.load(tree)
        heads: SupervisedHeads | None
        if heads_dir is not None:
            heads = SupervisedHeads.load(heads_dir)
        else:
            heads = shipped_heads(resolved, text_embedder) if use_shipped_heads else None
        return cls(
            resolved,
            text_embedder,
            image_embedder=image_embedder,
            cache_dir=cache_dir,
            heads=heads,
            settings=settings,
        )

    # ---- node matrices (cached per tree version and model) ------------------------------

    @cached_property
    def text_index(self) -> NodeIndex:
        if self.text_embedder is None:
            raise InvalidConfig("no text embedder configured for the taxonomy classifier")
        return build_node_index(
            self.tree, self.text_embedder.encode, self.text_embedder.model.id, self.cache_dir
        )

    @cached_property
    def image_index(self) -> NodeIndex:
        if self.image_embedder is None:
            raise InvalidConfig("no joint text-image model configured for the taxonomy classifier")
        embedder = self.image_embedder
        return build_node_index(self.tree, embedder.encode_texts, embedder.model.id, self.cache_dir)

    def warm(self) -> None:
        """Builds (or loads) the node matrices now rather than on the first item."""
        if self.text_embedder is not None:
            _ = self.text_index
        if self.image_embedder is not None:
            _ = self.image_index

    # ---- heads ----------------------------------------------------------------------------

    def set_heads(self, heads: SupervisedHeads) -> None:
        if heads.tree_version != self.tree.version:
            raise InvalidConfig(
                f"heads were trained for taxonomy {heads.tree_version}, this tree is "
                f"{self.tree.version}; retrain with `reelsift train taxonomy`"
            )
        if self.text_embedder is None or weights_id(heads.embedding_model) != weights_id(
            self.text_embedder.model.id
        ):
            current = self.text_embedder.model.id if self.text_embedder else "none"
            raise InvalidConfig(
                f"heads were trained on {heads.embedding_model} vectors, the text model is "
                f"{current}; retrain with the configured model"
            )
        self.heads = heads
        self._heads_columns = heads.column_index(self._index_of)
        if heads.calibration is not None:
            self.text_calibration = Calibration.from_dict(heads.calibration)

    # ---- scoring --------------------------------------------------------------------------

    def _lifted(self, vectors: np.ndarray, index: NodeIndex) -> np.ndarray:
        sims = index.similarities(vectors, self.settings.prototype_weight)
        return lift(sims, self._arrays, self.settings.child_weight)

    def text_logits(self, vectors: np.ndarray, *, use_heads: bool = True,
                    texts: Sequence[str] | None = None) -> np.ndarray:
        """Per-node logits; ``texts`` (the documents the vectors were made from) let the
        heads' word head join the root head."""
        vectors = _as_matrix(vectors, "text vectors")
        assert self.text_calibration is not None
        zero_shot = logits(self._lifted(vectors, self.text_index), self._arrays,
                           self.text_calibration)
        out = zero_shot
        if use_heads and self.heads is not None and self._heads_columns is not None:
            out = self.heads.apply(vectors, out, self._heads_columns)
            out = self.heads.apply_root_head(vectors, zero_shot, out, self._index_of,
                                             self._root_columns, texts)
        return out

    def image_logits(self, vectors: np.ndarray) -> np.ndarray:
        vectors = _as_matrix(vectors, "image vectors")
        assert self.image_calibration is not None
        return logits(self._lifted(vectors, self.image_index), self._arrays, self.image_calibration)

    def scores(
        self,
        text_vectors: np.ndarray | None = None,
        image_vectors: Sequence[np.ndarray | None] | None = None,
        *,
        use_heads: bool = True,
        texts: Sequence[str] | None = None,
    ) -> Scores:
        """Fused, gated per-node confidences for a batch.

        ``image_vectors[i]`` holds item i's image (or keyframe) vectors, ``(k_i, d)``.
        Modalities, and an item's several images, are fused by a weighted maximum of
        probabilities: a category shown by any one of them counts for the item (a cooking
        caption over football footage is about both), and correlated modalities that
        agree are not double-counted the way a noisy-OR would. ``texts``: the documents
        behind ``text_vectors`` (title on the first line), read by the word head if any.
        """
        n = _batch_size(text_vectors, image_vectors)
        fused = np.zeros((n, len(self.tree.ids)), dtype=np.float32)
        covered = np.zeros(n, dtype=bool)
        if text_vectors is not None and self.settings.text_weight > 0:
            text_logits = self.text_logits(text_vectors, use_heads=use_heads, texts=texts)
            fused = np.maximum(fused, self.settings.text_weight * sigmoid(text_logits))
            covered[:] = True
        if image_vectors is not None and self.settings.image_weight > 0:
            present = [i for i, v in enumerate(image_vectors) if v is not None and len(v) > 0]
            if present:
                matrices = [_as_matrix(image_vectors[i], "image vectors") for i in present]  # type: ignore[arg-type]
                per_image = sigmoid(self.image_logits(np.concatenate(matrices)))
                sizes = [m.shape[0] for m in matrices]
                starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
                best = np.maximum.reduceat(per_image, starts, axis=0)
                rows = np.array(present)
                fused[rows] = np.maximum(fused[rows], self.settings.image_weight * best)
                covered[rows] = True
        if not covered.all():
            missing = np.flatnonzero(~covered).tolist()
            raise InvalidInput(f"items {missing[:10]} have neither text nor image vectors")
        fused = np.minimum(fused, 1.0)
        return Scores(confidence=gate_top_down(fused, self._arrays), probability=fused)

    # ---- labels ---------------------------------------------------------------------------

    def classify(self, text_vectors: np.ndarray,
                 texts: Sequence[str] | None = None) -> list[list[Label]]:
        """Labels for a batch of text vectors made by this classifier's text embedder;
        with the documents' ``texts`` (title on the first line) the word head reads them
        too."""
        return self.labels_from_confidence(self.scores(text_vectors, texts=texts).confidence)

    def classify_texts(self, texts: Sequence[str]) -> list[list[Label]]:
        """Labels for whole documents (title, if any, on the first line), long ones read
        by chunks (``documents``)."""
        if len(texts) == 0:
            return []
        return self.classify(self.documents.embed_texts(list(texts)), list(texts))

    def classify_documents(
        self,
        titles: Sequence[str],
        texts: Sequence[str],
        document_vectors: np.ndarray | None = None,
    ) -> list[list[Label]]:
        """Labels for items given as separate titles and texts, long texts read by chunks.

        ``document_vectors``: the vectors the text analyzer already made (one pass over
        title and text); they are used as they are for texts that fit in one chunk, so
        only long texts cost extra encoding.
        """
        if len(texts) == 0:
            return []
        if len(titles) != len(texts):
            raise InvalidInput(f"{len(titles)} titles for {len(texts)} texts")
        documents = [f"{title}\n{text}" if title.strip() else text
                     for title, text in zip(titles, texts, strict=True)]
        if document_vectors is None:
            return self.classify(self.documents.embed(list(titles), list(texts)), documents)
        vectors = _as_matrix(document_vectors, "document vectors").copy()
        if vectors.shape[0] != len(texts):
            raise InvalidInput(f"{vectors.shape[0]} document vectors for {len(texts)} texts")
        limit = self.chunk_settings.words_per_chunk
        long_rows = [i for i, text in enumerate(texts) if len(text.split()) > limit]
        if long_rows:
            vectors[long_rows] = self.documents.embed([titles[i] for i in long_rows],
                                                      [texts[i] for i in long_rows])
        return self.classify(vectors, documents)

    @property
    def chunk_settings(self) -> ChunkSettings:
        """What the heads were trained on (they record it), else the defaults."""
        recorded = self.heads.hyper.get("chunking") if self.heads is not None else None
        return ChunkSettings(**recorded) if recorded else ChunkSettings()

    @property
    def documents(self) -> DocumentEmbedder:
        """Chunked, pooled document vectors from this classifier's text embedder."""
        if self.text_embedder is None:
            raise InvalidConfig("no text embedder configured for the taxonomy classifier")
        settings = self.chunk_settings
        if (self._documents is None or self._documents.settings != settings
                or self._documents.cache is not self.vector_cache):
            self._documents = DocumentEmbedder(self.text_embedder, settings,
                                               cache=self.vector_cache)
        return self._documents

    def classify_item(
        self,
        text_vector: np.ndarray | None = None,
        image_vectors: np.ndarray | None = None,
    ) -> list[Label]:
        """One item's labels from its text vector and/or its image vectors, fused."""
        text = None if text_vector is None else np.atleast_2d(text_vector)
        images = None if image_vectors is None else [np.atleast_2d(image_vectors)]
        return self.labels_from_confidence(self.scores(text, images).confidence)[0]

    def classify_images(self, images: Sequence[np.ndarray]) -> list[list[Label]]:
        """Labels per RGB image (H, W, 3 uint8), each image its own item."""
        if self.image_embedder is None:
            raise InvalidConfig("no joint text-image model configured for the taxonomy classifier")
        if len(images) == 0:
            return []
        vectors = self.image_embedder.encode_images(list(images))
        return self.labels_from_confidence(
            self.scores(None, [v[None, :] for v in vectors]).confidence
        )

    def classify_video(
        self,
        keyframes: Sequence[Keyframe],
        *,
        text_vector: np.ndarray | None = None,
        end_ms: int | None = None,
    ) -> list[Label]:
        """Item-level labels (no times) followed by per-segment labels with start/end ms.

        Consecutive keyframes whose label sets agree form one segment; a segment ends where
        the next begins (the last at ``end_ms``, or its last keyframe).
        """
        if not keyframes:
            if text_vector is None:
                raise InvalidInput("a video needs keyframes or a text vector to classify")
            return self.classify_item(text_vector)
        ordered = sorted(keyframes, key=lambda k: k.timestamp_ms)
        if any(k.timestamp_ms < 0 for k in ordered):
            raise InvalidInput("keyframe timestamps must be non-negative")
        frame_vectors = np.stack([np.asarray(k.vector, dtype=np.float32) for k in ordered])
        item_labels = self.classify_item(text_vector, frame_vectors)

        frame_conf = self.scores(None, [v[None, :] for v in frame_vectors]).confidence
        frame_sets = [
            tuple(label.id for label in labels)
            for labels in self.labels_from_confidence(frame_conf)
        ]
        segments: list[tuple[int, int]] = []  # [first, last] frame rows
        for row, ids in enumerate(frame_sets):
            if segments and frame_sets[segments[-1][0]] == ids:
                segments[-1] = (segments[-1][0], row)
            else:
                segments.append((row, row))
        out = list(item_labels)
        for seg_no, (first, last) in enumerate(segments):
            if not frame_sets[first]:
                continue
            start = ordered[first].timestamp_ms
            if seg_no + 1 < len(segments):
                end = ordered[segments[seg_no + 1][0]].timestamp_ms
            else:
                end = max(end_ms, ordered[last].timestamp_ms) if end_ms is not None else ordered[
                    last
                ].timestamp_ms
            mean_conf = frame_conf[first : last + 1].mean(axis=0)
            for node_id in frame_sets[first]:
                out.append(self._label(node_id, float(mean_conf[self._index_of[node_id]]),
                                       start, end))
        return out

    def labels_from_confidence(self, confidence: np.ndarray) -> list[list[Label]]:
        """Thresholded, ancestor-closed label lists from gated confidences ``(n, N)``."""
        arrays = self._arrays
        settings = self.settings
        allowed_tiers = settings.tiers
        max_tier = max(allowed_tiers) if allowed_tiers else arrays.max_tier
        eligible = arrays.tier <= max_tier
        passing = (confidence >= settings.min_confidence) & eligible
        # Deepest passing nodes: those with no passing child.
        has_passing_child = np.zeros_like(passing)
        rows, cols = np.nonzero(passing & (arrays.parent_index >= 0))
        has_passing_child[rows, arrays.parent_index[cols]] = True
        leaves = passing & ~has_passing_child
        results: list[list[Label]] = []
        for row in range(confidence.shape[0]):
            leaf_cols = np.flatnonzero(leaves[row])
            if leaf_cols.size == 0:
                results.append([])
                continue
            ranked = leaf_cols[np.argsort(-confidence[row, leaf_cols], kind="stable")]
            chosen = ranked[: settings.max_labels]
            members = np.flatnonzero(arrays.ancestor_mask[chosen].any(axis=0))
            if allowed_tiers is not None:
                members = members[np.isin(arrays.tier[members], allowed_tiers)]
            order = np.lexsort((-confidence[row, members], arrays.tier[members]))
            results.append(
                [
                    self._label(self.tree.ids[c], float(confidence[row, c]))
                    for c in members[order]
                ]
            )
        return results

    def _label(
        self, node_id: str, confidence: float, start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> Label:
        node = self.tree.get(node_id)
        return Label(
            id=node.id,
            name=node.name,
            path=list(node.path),
            confidence=round(min(max(confidence, 0.0), 1.0), 4),
            start_ms=start_ms,
            end_ms=end_ms,
            taxonomy_version=self.tree.version,
        )

    # ---- training -------------------------------------------------------------------------

    def targets(self, node_id_sets: Sequence[Collection[str]]) -> np.ndarray:
        """``(n, N)`` bool: each example's labels with all their ancestors."""
        mask = self._arrays.ancestor_mask
        out = np.zeros((len(node_id_sets), len(self.tree.ids)), dtype=bool)
        for row, ids in enumerate(node_id_sets):
            cols = [self._index_of[i] for i in ids]
            if cols:
                out[row] = mask[cols].any(axis=0)
        return out

    def fit_calibration(
        self, text_vectors: np.ndarray, node_id_sets: Sequence[Collection[str]]
    ) -> Calibration:
        """Fits the text calibration on labeled vectors and starts using it."""
        assert self.text_embedder is not None
        lifted = self._lifted(_as_matrix(text_vectors, "text vectors"), self.text_index)
        calibration = fit_calibration(
            lifted,
            self.targets(node_id_sets),
            self._arrays,
            model=self.text_embedder.model.name,
            fitted_on={"tree_version": self.tree.version, "examples": len(node_id_sets),
                       "model_id": self.text_embedder.model.id},
        )
        self.text_calibration = calibration
        return calibration

    def train_heads(
        self,
        text_vectors: np.ndarray,
        node_id_sets: Sequence[Collection[str]],
        *,
        regularisation: float = 4.0,
        min_positives: int = 2,
        refit_calibration: bool = True,
        root_head: bool = False,
        root_regularisation: float = 4.0,
        node_text_weight: float = 0.3,
        none_weight: float = 0.3,
        held_out_vectors: np.ndarray | None = None,
        held_out_node_id_sets: Sequence[Collection[str]] | None = None,
        chunking: ChunkSettings | None = None,
        texts: Sequence[str] | None = None,
        held_out_texts: Sequence[str] | None = None,
        word_regularisation: float = 10.0,
        word_features: int = 2**16,
    ) -> SupervisedHeads:
        """Trains per-node heads (and, with enough data, the calibration) and starts using them.

        ``root_head``: tier-1 nodes get one softmax head over the roots and "none" (rows
        with an empty label set are its "none" examples); every node's own texts join the
        training rows as examples of its root (each weighing ``node_text_weight`` of a
        labeled row: short phrases, not documents), so roots without labeled rows are still
        known. Rows with no category weigh ``none_weight``: at full weight, spam SMS taught
        "none" to ordinary posts that mention a price or a hashtag. Its temperature is
        fitted on ``held_out_*`` rows, never the training ones.
        ``chunking``: recorded with the heads, the document recipe the vectors were made by.
        ``texts`` and ``held_out_texts`` (with ``root_head``): the rows' documents; a word
        head (``WordHead``: hashed word 1-2 gram TF-IDF, ``word_features`` columns) is
        trained on the same rows and classes, and its blend with the root head chosen on
        the held-out rows.
        """
        if self.text_embedder is None:
            raise InvalidConfig("training heads needs a text embedder")
        vectors = _as_matrix(text_vectors, "text vectors")
        if vectors.shape[0] != len(node_id_sets):
            raise InvalidInput(f"{vectors.shape[0]} vectors but {len(node_id_sets)} label sets")
        calibration_dict = None
        if refit_calibration:
            try:
                calibration_dict = self.fit_calibration(vectors, node_id_sets).to_dict()
            except InvalidConfig as exc:
                log.info("keeping the existing calibration: %s", exc.message)
        zero_shot = self.text_logits(vectors, use_heads=False)
        heads = SupervisedHeads.train(
            vectors,
            zero_shot,
            self.targets(node_id_sets),
            list(self.tree.ids),
            tree_version=self.tree.version,
            embedding_model=self.text_embedder.model.id,
            regularisation=regularisation,
            min_positives=min_positives,
        )
        heads.calibration = calibration_dict
        if chunking is not None:
            heads.hyper["chunking"] = vars(chunking).copy()
        if root_head:
            heads.root_head = self._train_root_head(
                vectors, node_id_sets, root_regularisation, node_text_weight, none_weight,
                held_out_vectors, held_out_node_id_sets,
            )
            heads.hyper["none_weight"] = none_weight
            heads.hyper["root_regularisation"] = root_regularisation
            heads.hyper["node_text_weight"] = node_text_weight
            if texts is not None:
                heads.word_head = self._train_word_head(
                    heads.root_head, texts, node_id_sets, held_out_vectors, held_out_texts,
                    held_out_node_id_sets, word_regularisation, word_features)
                heads.hyper["word_head"] = {"regularisation": word_regularisation,
                                            "features": word_features}
        self.set_heads(heads)
        return heads

    def _train_word_head(
        self,
        root_head: RootHead,
        texts: Sequence[str],
        node_id_sets: Sequence[Collection[str]],
        held_out_vectors: np.ndarray | None,
        held_out_texts: Sequence[str] | None,
        held_out_node_id_sets: Sequence[Collection[str]] | None,
        regularisation: float,
        n_features: int,
    ) -> WordHead:
        if len(texts) != len(node_id_sets):
            raise InvalidInput(f"{len(texts)} texts but {len(node_id_sets)} label sets")
        if held_out_vectors is None or held_out_texts is None or held_out_node_id_sets is None:
            raise InvalidInput("the word head's blend is chosen on held-out rows: give their "
                               "vectors, texts and labels")
        head = WordHead.train(texts, self.root_classes(node_id_sets), regularisation, n_features)
        held_out_probs = root_head.probabilities(self.root_features(held_out_vectors))
        losses = head.fit_blend(np.log(np.clip(held_out_probs, 1e-12, 1.0)), held_out_texts,
                                root_head.classes, self.root_classes(held_out_node_id_sets))
        log.info("word head blend %.1f (temperature %.3f); held-out log loss by blend %s",
                 head.blend, head.temperature, losses)
        return head

    def root_of(self, node_id: str) -> str:
        chain = self.tree.ancestors(node_id)
        return chain[0].id if chain else node_id

    def root_classes(self, node_id_sets: Sequence[Collection[str]]) -> list[str]:
        """Each row's root (its first label's), or the "none" class for no label."""
        return [self.root_of(next(iter(ids))) if ids else NONE_CLASS for ids in node_id_sets]

    def root_features(self, vectors: np.ndarray) -> np.ndarray:
        """The root head's (and topic gate's) features: vectors and the roots' zero-shot
        logits."""
        matrix = _as_matrix(vectors, "text vectors")
        zero_shot = self.text_logits(matrix, use_heads=False)
        return RootHead.features(matrix, zero_shot[:, list(self._root_columns.values())])

    def train_topic_gate(
        self,
        vectors: np.ndarray,
        topical: Sequence[bool],
        held_out_vectors: np.ndarray,
        held_out_topical: Sequence[bool],
        *,
        recall: float = 0.98,
        regularisation: float = 1.0,
        node_text_weight: float = 0.3,
    ) -> TopicGate:
        """Trains the topic gate in front of the root head and starts using it.

        ``topical``: per row, whether it has a category (labeled rows, headlines) or not
        (spam, nonsense); every node's own texts join as topical rows weighing
        ``node_text_weight``. The threshold keeps ``recall`` of the held-out topical rows
        (``TopicGate.choose_threshold``), never looking at the training rows.
        """
        if self.heads is None or self.heads.root_head is None:
            raise InvalidConfig("the topic gate sits in front of a root head: train one first")
        index = self.text_index
        features = self.root_features(np.concatenate([_as_matrix(vectors, "text vectors"),
                                                      index.texts]))
        flags = np.concatenate([np.asarray(topical, dtype=bool),
                                np.ones(index.texts.shape[0], dtype=bool)])
        weights = np.concatenate([np.ones(len(topical)),
                                  np.full(index.texts.shape[0], node_text_weight)])
        gate = TopicGate.train(features, flags, regularisation, sample_weight=weights)
        gate.choose_threshold(self.root_features(held_out_vectors),
                              np.asarray(held_out_topical, dtype=bool), recall)
        self.heads.topic_gate = gate
        self.heads.hyper["topic_gate"] = {"recall": recall, "regularisation": regularisation,
                                          "node_text_weight": node_text_weight}
        return gate

    def _train_root_head(
        self,
        vectors: np.ndarray,
        node_id_sets: Sequence[Collection[str]],
        regularisation: float,
        node_text_weight: float,
        none_weight: float,
        held_out_vectors: np.ndarray | None,
        held_out_node_id_sets: Sequence[Collection[str]] | None,
    ) -> RootHead:
        index = self.text_index
        node_of_text = np.repeat(np.arange(len(self.tree.ids)),
                                 np.diff(np.append(index.text_starts, index.texts.shape[0])))
        node_text_roots = [self.root_of(self.tree.ids[c]) for c in node_of_text]
        roots = list(self._root_columns)

        def features(matrix: np.ndarray) -> np.ndarray:
            zero_shot = self.text_logits(matrix, use_heads=False)
            return RootHead.features(matrix, zero_shot[:, [self._index_of[r] for r in roots]])

        row_classes = self.root_classes(node_id_sets)
        row_weights = np.where(np.array(row_classes) == NONE_CLASS, none_weight, 1.0)
        head = RootHead.train(
            features(np.concatenate([vectors, index.texts])),
            row_classes + node_text_roots,
            regularisation,
            zero_shot_roots=roots,
            sample_weight=np.concatenate([row_weights,
                                          np.full(len(node_text_roots), node_text_weight)]),
        )
        if held_out_vectors is not None and held_out_node_id_sets is not None:
            held_out = _as_matrix(held_out_vectors, "held-out vectors")
            head.fit_temperature(features(held_out), self.root_classes(held_out_node_id_sets))
        else:
            log.warning("no held-out rows: the root head's temperature stays 1.0 (uncalibrated)")
        return head


def shipped_heads(tree: TaxonomyTree, embedder: TextEmbedder | None) -> SupervisedHeads | None:
    """The heads shipped in ``data/heads`` if they fit this tree and text model."""
    if embedder is None or not (SHIPPED_HEADS / CONFIG_FILE).exists():
        return None
    heads = SupervisedHeads.load(SHIPPED_HEADS)
    if heads.tree_version != tree.version or weights_id(heads.embedding_model) != weights_id(
        embedder.model.id
    ):
        log.info("shipped taxonomy heads are for %s on %s, not %s on %s: zero-shot only",
                 heads.embedding_model, heads.tree_version, embedder.model.id, tree.version)
        return None
    return heads


def _as_matrix(vectors: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise InvalidInput(f"{what} must be a (n, dim) array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InvalidInput(f"{what} contain NaN or infinite values")
    return array


def _batch_size(
    text_vectors: np.ndarray | None, image_vectors: Sequence[np.ndarray | None] | None
) -> int:
    if text_vectors is None and image_vectors is None:
        raise InvalidInput("nothing to classify: give text vectors, image vectors or both")
    n_text = None if text_vectors is None else np.atleast_2d(text_vectors).shape[0]
    n_image = None if image_vectors is None else len(image_vectors)
    if n_text is not None and n_image is not None and n_text != n_image:
        raise InvalidInput(f"{n_text} text vectors but image vectors for {n_image} items")
    return int(n_text if n_text is not None else n_image)  # type: ignore[arg-type]
