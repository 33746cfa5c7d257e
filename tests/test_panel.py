"""The search panel's actions, driven from Python (the browser test covers the served page)."""

import shutil

import numpy as np
import pytest

from lab import Collection
from lab.panel import SearchPanel
from lab.sample_images import label_of


@pytest.fixture()
def panel(tmp_path, photo_collection):
    shutil.copytree(photo_collection.root, tmp_path / "col")
    return SearchPanel(Collection.open(tmp_path / "col"), page_size=4, user="tester")


def shown(panel):
    return [panel.collection.paths[c.row] for c in panel.cards if c.row is not None]


def test_search_pages_are_the_session_pages_the_evaluation_drives(panel):
    first = panel.run_search("vehicle")
    assert len(first) == 4 and shown(panel) == first["path"].tolist()
    assert panel.page_label.value.strip().startswith("&nbsp;page 1 / 1+") and not panel.next.disabled
    panel.judge_slot(0, False)  # the next page learns from this
    expected = panel.collection.search("vehicle", k=4, explore=True, exclude=first["id"].to_numpy())
    panel.show_page(1)
    assert shown(panel) == expected["path"].tolist()
    assert not set(expected["id"]) & set(first["id"]) and not panel.previous.disabled
    panel.show_page(0)  # going back shows the page as it was
    assert shown(panel) == first["path"].tolist()
    assert [page["id"].tolist() for page in panel.session.pages_] == [first["id"].tolist(), expected["id"].tolist()]


def test_rating_buttons_record_judgments_for_the_session_user(panel):
    panel.run_search("vehicle")
    panel.judge_slot(1, True)
    panel.judge_slot(2, False)
    judgments = panel.collection.judgments("vehicle")
    assert judgments["relevant"].tolist() == [True, False] and set(judgments["user"]) == {"tester"}
    assert "vehicle" in panel.terms_view.value


def test_more_like_selected_and_teach_selected(panel):
    panel.run_search("vehicle")
    cars = [c for c in panel.cards if c.row is not None and label_of(panel.collection.paths[c.row]) == "imagenet609"]
    for card in cars:
        card.select.value = True
    selected = {c.row for c in cars}
    assert len(selected) == 2
    similar = panel.more_like_selected()
    assert len(similar) and not set(similar["id"]) & selected
    # the nearest image to the two cars' mean direction, computed independently
    from lab.vectors import unit_rows

    unit = unit_rows(panel.collection.embeddings)
    mean = unit_rows(unit[sorted(selected)].mean(axis=0)[None])[0]
    order = [int(i) for i in np.argsort(-(unit @ mean)) if int(i) not in selected]
    assert similar["id"].iloc[0] == order[0]
    panel.run_search("vehicle")
    for card in panel.cards[:2]:
        card.select.value = True
    assert panel.teach_selected("my ride") == 2
    assert panel.collection.terms().set_index("term").loc["my ride", "examples"] == 2


def test_errors_show_in_the_status_line(panel):
    panel.run_search("   ")
    assert "empty" in panel.status.value
    assert panel.teach_selected("word") == 0 and "select" in panel.status.value
    panel.run_similar(b"not an image")
    assert "cannot use" in panel.status.value


def test_upload_runs_a_reverse_image_query(panel, photo_folder):
    data = (photo_folder / "coffee__coffee.jpg").read_bytes()
    panel._on_upload({"new": ({"name": "coffee.jpg", "content": memoryview(data)},)})
    assert label_of(shown(panel)[0]) == "coffee"
    assert panel.term is None and all(c.relevant.disabled for c in panel.cards if c.row is not None)


def test_a_word_whose_first_page_was_all_rejected_gets_images_to_judge(panel):
    # "animal" is an ImageNet term with evidence for a full page
    first = panel.run_search("animal")
    assert not first["reason"].str.startswith("exploring").any()
    for slot in range(4):
        panel.judge_slot(slot, False)
    for _ in range(4):  # four pages rejected in full: the evidence's share falls to 20 / (20 + 16)
        again = panel.run_search("animal")
        for slot in range(4):
            panel.judge_slot(slot, False)
        rejected = set(panel.collection.judgments("animal")["path"].map(panel.collection.row_of))
    again = panel.run_search("animal")
    assert again["reason"].str.startswith("exploring").sum() >= 1
    assert not set(again["id"]) & rejected  # rejected images never show
    assert len(shown(panel)) == 4


def test_an_upload_over_the_limit_gets_a_message_and_the_panel_keeps_working(panel, photo_folder):
    from lab.panel import MAX_UPLOAD_MB

    # what the page sends for a file over the limit: no bytes, its real size
    panel._on_upload({"new": ({"name": "scan.tif", "content": memoryview(b""), "size": (MAX_UPLOAD_MB + 1) * 2**20},)})
    assert f"scan.tif is {MAX_UPLOAD_MB + 1}.0 MB" in panel.status.value and "#b00" in panel.status.value
    assert panel.upload.value == ()
    data = (photo_folder / "coffee__coffee.jpg").read_bytes()
    panel._on_upload({"new": ({"name": "coffee.jpg", "content": memoryview(data), "size": len(data)},)})
    assert label_of(shown(panel)[0]) == "coffee"
