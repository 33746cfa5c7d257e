"""Every tuning value of search in one dataclass, with its default and where it was measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

__all__ = ["SearchConfig"]

# how fast learned evidence takes over from the vocabulary prior, by kind of word: for a word ImageNet
# does not cover, the vocabulary's classes are only a place to start, and once there is an example it
# takes over (strength 0 gave a better one-example P@20 than 0.25 in a run of scripts/evaluate_caltech.py,
# see the README's design notes; today's figure is in results/evaluation_caltech101.md)
_PRIOR_STRENGTH = MappingProxyType({"imagenet": 3.0, "related": 0.0, "unknown": 0.0})
# while nothing relevant is known, the share of a page that shows the vocabulary's evidence rather than
# exploring is trust / (trust + doubt + rejections): an ImageNet word keeps its page until a page's
# worth is rejected; a related word starts at 3/4 and drops to 1/8 after a rejected page; an unknown
# word explores (measured on flower_photos_600, Caltech-101 and two look-alike subsets of it:
# results/evaluation_*.md)
_PRIOR_TRUST = MappingProxyType({"imagenet": 20.0, "related": 3.0, "unknown": 0.0})
_PRIOR_DOUBT = MappingProxyType({"imagenet": 0.0, "related": 1.0, "unknown": 1.0})


@dataclass(frozen=True)
class SearchConfig:
    """Tuning of keyword search, ranking and exploration for one collection.

    Pass one to :meth:`lab.Collection.open` (``config=SearchConfig(min_score=0.05)``)
    or set ``col.config``; change one value with :func:`dataclasses.replace`.
    The defaults were tuned with ``scripts/evaluate_collections.py`` (tables
    in ``results/evaluation_*.md``: Caltech-101, flower_photos_600 and two
    look-alike subsets of Caltech-101).

    Parameters
    ----------
    min_score : float
        Below this score an image shows no evidence for a word and is not
        listed (unless judged relevant); a class under this probability is
        not named in a result's reason.
    calibration_z : float
        Robust deviations above the collection's median at which a learned
        score is 0.5.
    evidence_z : float
        A learned score counts as evidence only this many robust deviations
        above the median (below it the score is 0).
    pca_threshold : int
        Above this many images, word models score PCA-reduced embeddings.
    pca_dimensions : int
        Principal axes kept above ``pca_threshold``: with 128, words are
        learned nearly as with 256 and the full embeddings (found in 4 pages
        on Caltech-101 49.4 / 49.8 / 50.0, teach-once P@20 0.887 / 0.895 /
        0.897), 64 lose teach-once precision on Caltech-101
        (``results/evaluation_pca.md``); 128 float32 values are 512 MB per
        million images (``results/bench_search_scaling.md``).
    pca_sample : int
        Images sampled (seeded) to fit the principal axes.
    calibration_sample : int
        Above this many images the median and MAD used for calibration come
        from a fixed sample of this size (the same answer, far cheaper).
    block_size : int
        Rows read at a time from the float16 store when building the scoring
        space and the class matrix: the copies a block needs (about 4 x 80 MB
        of 1280-d float32) are all the building adds to what is kept.
    prior_floor : float
        Class probabilities under this are dropped from the sparse class
        matrix; the dropped tail cannot lift an image over ``min_score``.
    n_expansion : int
        Query expansion: the images closest to a learned direction averaged
        into it (0 turns expansion off).
    expansion_weight : float
        Weight of that average in the expanded direction.
    expansion_until : int
        Query expansion stands in for examples the user has not given yet:
        it is used while a word has fewer relevant examples (judged or
        taught) than this, and then left to the examples (0: never; a
        large number: at every step, as before issue 8's last change). Chosen
        for classes of 80 look-alike photos, the class size of issue 8's
        17-species collection: on flower_photos_600 cut to 80 photos a species
        55.5 -> 57.8 relevant images are found in 4 pages (mean of three
        exploration seeds; the fourth page's precision 0.73 -> 0.81), at a
        cost on CIFAR-10 cut the same way (50.6 -> 49.8) and Caltech-101
        (50.2 -> 49.9); the other collections within 0.4
        (``results/expansion_until.md``).
    prior_strength : mapping
        Per kind of word ("imagenet", "related", "unknown"): the learned score
        weighs ``n / (n + prior_strength[kind])`` against the vocabulary's
        prior after ``n`` positive examples.
    prior_trust, prior_doubt : mapping
        Per kind of word: while no image is known to be relevant, a share
        ``trust / (trust + doubt + n_rejected)`` of page positions shows the
        vocabulary's evidence and the rest explores (``explore=True``); each
        rejected image also lowers the weight of the classes that put it
        forward by ``trust / (trust + its probability mass on them)``.
    logistic_C : float
        Inverse regularisation of a word's logistic regression
        (:class:`lab.term_model.TermClassifier` ``C``).
    keep_rocchio : bool
        Add the logistic direction to Rocchio's instead of replacing it
        (``TermClassifier(keep_rocchio=True)``; with ``logistic_C=1`` the
        model before issue 8, which ``results/evaluation_design_choices.md``
        compares with the default).
    background_weight, background_sample : float, int
        A word's logistic regression also contrasts its relevant images with
        ``background_sample`` images of the collection (seeded), the half least
        like them, as far as fewer images were judged not relevant than
        relevant (:class:`lab.term_model.TermClassifier` ``background_weight``):
        with three look-alikes rejected against 57 relevant images, the direction
        otherwise says "not a cat" rather than "a dog". 0 turns it off.
    confident_discount : float
        For a word ImageNet does not cover, each image's prior is multiplied
        by ``(1 - its top class probability) ** confident_discount``: an
        image the network is sure of most likely shows the class it names, a
        look-alike of the word rather than the word ("dandelion" -> the
        daisies the network calls daisies). 0 turns it off; 0.5 found 65.0
        instead of 63.3 relevant images in 4 pages on flower_photos_600 and
        about as many elsewhere (``results/evaluation_design_choices.md``).
    example_limit : int
        When only rejections are known, images are pushed down by their
        likeness to the latest this many rejected ones.
    explore_pool_size, explore_n_clusters, explore_n_broad : int
        Passed to :class:`lab.exploration.Explorer` (``pool_size``,
        ``n_clusters``, ``n_broad``): images to judge come from the most
        typical image of each of ``explore_n_broad`` broad groups, then of
        ``explore_n_clusters`` finer ones.
    explore_seed : int
        Seed of the exploration sample and of the groups' k-means
        (:class:`lab.exploration.Explorer`, :class:`lab.exploration.ImageGroups`);
        evaluations average over several to tell a design from luck.
    group_size : int
        Images per group of look-alikes (:class:`lab.exploration.ImageGroups`,
        fitted on ``explore_pool_size`` images) over which a doubted prior is spread.
    spread_share : float
        While nothing relevant is known, the share of the evidence's page
        positions that show the prior's best image of each group in turn
        (:func:`lab.search.ranking.spread`) for a kind of word with
        ``prior_doubt`` above 0; the rest follow the prior's order (0 turns
        spreading off).
    spread_pool : int
        Only the prior's best this many images are spread.
    """

    min_score: float = 0.01
    calibration_z: float = 4.0
    evidence_z: float = 2.0
    pca_threshold: int = 50_000
    pca_dimensions: int = 128
    pca_sample: int = 20_000
    calibration_sample: int = 20_000
    block_size: int = 16_384
    prior_floor: float = 1e-3
    n_expansion: int = 5
    expansion_weight: float = 0.5
    expansion_until: int = 5
    prior_strength: Mapping[str, float] = field(default_factory=lambda: _PRIOR_STRENGTH)
    prior_trust: Mapping[str, float] = field(default_factory=lambda: _PRIOR_TRUST)
    prior_doubt: Mapping[str, float] = field(default_factory=lambda: _PRIOR_DOUBT)
    logistic_C: float = 10.0
    keep_rocchio: bool = False
    background_weight: float = 0.5
    background_sample: int = 256
    confident_discount: float = 0.5
    example_limit: int = 32
    explore_pool_size: int = 4000
    explore_n_clusters: int = 100
    explore_n_broad: int = 15
    explore_seed: int = 0
    group_size: int = 30
    spread_share: float = 0.5
    spread_pool: int = 2000

    def __post_init__(self):
        # the values a word model takes at its first judgment, checked when set rather than at that search
        if not 0.0 <= self.background_weight <= 1.0:
            raise ValueError(f"SearchConfig.background_weight must be within [0, 1], got {self.background_weight!r}")
        if isinstance(self.expansion_until, bool) or not isinstance(self.expansion_until, int) or self.expansion_until < 0:
            raise ValueError(f"SearchConfig.expansion_until must be a whole number, 0 or more, got {self.expansion_until!r}")
        if isinstance(self.background_sample, bool) or not isinstance(self.background_sample, int) or self.background_sample < 1:
            raise ValueError(f"SearchConfig.background_sample must be a whole number, 1 or more, got {self.background_sample!r}")
