"""Search over a collection's arrays: keywords, query by example, feedback.

* Keyword search (:mod:`.keywords`) scores every image by the probability
  mass the network puts on the ImageNet classes a word covers (the
  vocabulary's prior), blended with a per-word classifier learned from
  judgments and taught examples, in a scoring space (:mod:`.space`).
* Ranking and paging (:mod:`.ranking`): images judged relevant first (by net
  votes across users), images judged not relevant never shown, then the
  score; images with no evidence at all are not listed, so ties never fall
  back to storage order; pages short of evidence can make room for exploring.
* Query by example (:mod:`.similar`) ranks by cosine, euclidean or manhattan
  distance on the transfer layer (embeddings) or the output layer (class
  probabilities).
* :class:`SearchEngine` (:mod:`.engine`) puts them together over plain arrays;
  :class:`SearchConfig` (:mod:`.config`) holds every tuning value;
  :mod:`.frames` turns pages into the tables users see.
"""

from .config import SearchConfig
from .engine import SearchEngine
from .similar import QueryImage

__all__ = ["QueryImage", "SearchConfig", "SearchEngine"]
