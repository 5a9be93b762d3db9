"""Category tree (IAB Content Taxonomy 3.1 by default) and the hierarchical classifier.

Typical use from the analysis pipeline::

    classifier = TaxonomyClassifier.load(text_embedder, cache_dir=..., heads_dir=None)
    labels_per_item = classifier.classify(text_vectors)   # list[list[Label]]
"""

from taxonomy.classifier import ClassifierSettings, Keyframe, Scores, TaxonomyClassifier
from taxonomy.heads import SupervisedHeads
from taxonomy.tree import TaxonomyNode, TaxonomyTree

__all__ = [
    "ClassifierSettings",
    "Keyframe",
    "Scores",
    "SupervisedHeads",
    "TaxonomyClassifier",
    "TaxonomyNode",
    "TaxonomyTree",
]
