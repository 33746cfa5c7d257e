"""The WordNet -> ImageNet vocabulary: synonyms, plurals, hyponyms, compounds, unknown words."""

import numpy as np
import pytest

from lab.vocabulary import load_vocabulary, normalize_term


@pytest.fixture(scope="module")
def vocab():
    return load_vocabulary()


def names(vocab, resolution):
    return {vocab.class_names[c] for c in resolution.classes}


def test_dog_covers_all_118_breeds_and_not_the_hot_dog(vocab):
    dog = vocab.resolve("dog")
    assert dog.kind == "imagenet" and len(dog.classes) == 118
    assert {"Chihuahua", "dalmatian", "Siberian husky"} <= names(vocab, dog)
    assert "hotdog" not in names(vocab, dog)


def test_vehicle_covers_cars_buses_and_trucks(vocab):
    vehicle = names(vocab, vocab.resolve("vehicle"))
    assert {"sports car", "school bus", "trailer truck", "minibus"} <= vehicle


@pytest.mark.parametrize("query, term", [("Dogs", "dog"), ("buses", "bus"), ("mice", "mouse"), ("  Sports_Cars ", "sports car"), ("geese", "goose"), ("BUTTERFLIES", "butterfly")])
def test_plurals_case_and_spacing(vocab, query, term):
    resolution = vocab.resolve(query)
    assert resolution.term == term and len(resolution.classes) > 0


def test_synonyms_share_classes(vocab):
    # every automobile is a car; "car" also means a railway car (freight car, passenger car)
    assert set(vocab.resolve("automobile").classes) < set(vocab.resolve("car").classes)
    assert {"freight car", "passenger car"} <= names(vocab, vocab.resolve("car")) - names(vocab, vocab.resolve("automobile"))
    assert set(vocab.resolve("cellphone").classes) == set(vocab.resolve("mobile phone").classes)


def test_multi_word_terms(vocab):
    assert names(vocab, vocab.resolve("sports car")) == {"sports car"}
    assert names(vocab, vocab.resolve("grand piano")) == {"grand piano"}


def test_words_imagenet_does_not_cover_get_related_classes(vocab):
    beach = vocab.resolve("beach")
    assert "seashore" in names(vocab, beach)
    people = vocab.resolve("people")
    assert people.kind == "imagenet" and "scuba diver" in names(vocab, people)
    dolphin = vocab.resolve("dolphin")
    assert "killer whale" in names(vocab, dolphin)
    stop_sign = vocab.resolve("stop sign")  # unknown compound: a kind of its head noun
    assert stop_sign.kind == "related" and "street sign" in names(vocab, stop_sign)
    # in "A of B" the head noun is A: "lily of the valley" is no valley (it was: the class "valley")
    assert "valley" not in names(vocab, vocab.resolve("lily of the valley"))
    assert names(vocab, vocab.resolve("cup of tea")) == names(vocab, vocab.resolve("cup"))


def test_word_vectors_add_classes_of_words_used_alike(vocab):
    menorah = vocab.resolve("menorah")  # WordNet relates it to no ImageNet class; GloVe puts it next to "candle"
    assert menorah.kind == "related" and names(vocab, menorah) == {"candle"}
    assert any(sense.startswith("words used like it: candle") for sense in menorah.senses)
    helicopter = vocab.resolve("helicopter")  # WordNet: other aircraft; word vectors add warplanes and carriers
    from_wordnet = {c for c, w in zip(helicopter.classes, helicopter.weights) if w >= 1.0}
    assert "airliner" in {vocab.class_names[c] for c in from_wordnet}
    assert helicopter.weights.sum() == pytest.approx(len(from_wordnet) + 1.0, abs=1e-5)  # the similar words share one unit
    dog = vocab.resolve("dog")  # ImageNet terms are left as WordNet says
    assert dog.kind == "imagenet" and (dog.weights == 1.0).all()


def test_a_plural_means_its_singular_when_only_word_vectors_know_it(vocab):
    # "tulip" is a WordNet noun with no ImageNet class near it: only the word vectors relate it to classes;
    # "tulips" used to be an unknown word while "tulip" was a related one
    for plural, singular in (("tulips", "tulip"), ("menorahs", "menorah"), ("lotuses", "lotus")):
        assert singular not in vocab  # WordNet alone relates it to nothing
        resolution = vocab.resolve(plural)
        assert resolution.kind == "related"
        np.testing.assert_array_equal(resolution.classes, vocab.resolve(singular).classes)
        # the term judgments are stored under is still the word as typed: what was judged before is still found
        assert resolution.term == plural
    assert vocab.resolve("ad").term == "ad"  # and no singular is taken for a plural of the word vectors


def test_unknown_words(vocab):
    garfield = vocab.resolve("garfield")
    assert garfield.kind == "unknown" and len(garfield.classes) == 0
    assert "xqzzv" not in vocab and "dog" in vocab


def test_normalize_term_rejects_non_strings():
    with pytest.raises(TypeError):
        normalize_term(42)
