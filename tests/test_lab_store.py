"""How one lab's images are resolved and placed in the shared lab registry (kslab/steps/lab_store.py), with the
registry and crane played in memory: each lab's own repositories, a source's image fetched once per machine."""
import pytest

from kslab.model.image_sources import LabRegistry, source_copy_repository
from kslab.steps import lab_store
from kslab.steps.registry_check import FOUND, MISSING, UNREACHABLE, Answer

LAB = LabRegistry("kslab-registry", 5100)
D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


class Registry:
    """The lab registry's contents (reference -> digest) and the copies crane made into it."""

    def __init__(self, held=None):
        self.held = dict(held or {})
        self.copies: list[tuple[str, str]] = []

    def copy(self, source, destination, docker_config):
        self.copies.append((source, destination))
        self.held[destination] = self.held.get(source) or source.rsplit("@", 1)[-1]


@pytest.fixture
def registry(monkeypatch):
    played = Registry()
    monkeypatch.setattr(lab_store.crane, "copy", played.copy)
    monkeypatch.setattr(lab_store.LabStore, "digest", lambda self, ref: played.held.get(ref, ""))
    return played


class Checker:
    def __init__(self, answers):
        self.answers = answers
        self.asked: list[str] = []

    def ask(self, ref):
        self.asked.append(ref)
        return self.answers.get(ref, Answer(MISSING, "404"))


def _store(lab_id="lab-a"):
    return lab_store.LabStore(LAB, lab_id, {})


def test_a_source_copy_is_named_after_its_source_host_and_repository():
    assert source_copy_repository("127.0.0.1:5000/kubesphere/ks-apiserver:v3.4.1") == \
        "sources/127.0.0.1-5000/kubesphere/ks-apiserver"
    assert source_copy_repository("Harbor.Corp/ks/kcm@" + D1) == "sources/harbor.corp/ks/kcm"


def test_the_copy_tag_of_a_digest_is_a_valid_tag():
    assert lab_store.copy_tag(D1) == "sha256-" + "1" * 64
    assert lab_store.copy_tag("sha512:" + "a" * 128) == "", "too long for a tag: no copy by digest"


def test_the_first_source_that_has_an_image_wins_and_later_ones_are_not_asked():
    checker = Checker({"b.corp/ks/x:1": Answer(FOUND, "200", D1), "c.corp/ks/x:1": Answer(FOUND, "200", D2)})
    found = lab_store.resolve({"ks/x:1": ["a.corp/ks/x:1", "b.corp/ks/x:1", "c.corp/ks/x:1"]}, checker, None)
    item = found["ks/x:1"]
    assert (item.how, item.source, item.digest) == (lab_store.FROM_SOURCE, "b.corp/ks/x:1", D1)
    assert checker.asked == ["a.corp/ks/x:1", "b.corp/ks/x:1"]


def test_an_unreachable_source_is_stood_in_for_by_this_machines_copy_of_it(registry):
    store = _store()
    registry.held[store.machine_copy("a.corp/ks/x:1", "1")] = D1
    checker = Checker({"a.corp/ks/x:1": Answer(UNREACHABLE, "refused"), "b.corp/ks/x:1": Answer(FOUND, "200", D2)})
    item = lab_store.resolve({"ks/x:1": ["a.corp/ks/x:1", "b.corp/ks/x:1"]}, checker, store)["ks/x:1"]
    assert (item.how, item.source) == (lab_store.FROM_MACHINE_COPY, "a.corp/ks/x:1")
    assert checker.asked == ["a.corp/ks/x:1"], "the next source is not asked: the first one's copy is the image"


def test_a_source_that_says_missing_is_never_stood_in_for(registry):
    store = _store()
    registry.held[store.machine_copy("a.corp/ks/x:1", "1")] = D1
    checker = Checker({"a.corp/ks/x:1": Answer(MISSING, "404"), "b.corp/ks/x:1": Answer(FOUND, "200", D2)})
    item = lab_store.resolve({"ks/x:1": ["a.corp/ks/x:1", "b.corp/ks/x:1"]}, checker, store)["ks/x:1"]
    assert (item.how, item.source, item.digest) == (lab_store.FROM_SOURCE, "b.corp/ks/x:1", D2)


def test_an_image_nothing_has_is_reported_with_every_answer_among_all_the_lab_asked(registry):
    from kslab.steps.registry_check import report_sources
    store = _store()
    registry.held[store.machine_copy("c.corp/ks/z:1", "1")] = D1
    checker = Checker({"b.corp/ks/y:1": Answer(FOUND, "200", D1), "c.corp/ks/z:1": Answer(UNREACHABLE, "refused")})
    found = lab_store.resolve({"ks/x:1": ["a.corp/ks/x:1"], "ks/y:1": ["b.corp/ks/y:1"],
                               "ks/z:1": ["c.corp/ks/z:1"]}, checker, store)
    asked = lab_store.as_asked(found)
    assert asked["ks/x:1"] == [("a.corp/ks/x:1", Answer(MISSING, "404"))]
    refusal = report_sources(asked, {})
    assert refusal is not None and refusal.startswith("1 of 3 planned images are in none of the image sources")


def test_an_image_is_fetched_by_its_digest_once_and_linked_into_the_labs_own_repository(registry):
    placer = lab_store.Placer(_store(), None, lambda line: None)
    placer.place(lab_store.Resolved("ks/x:1", lab_store.FROM_SOURCE, "a.corp/ks/x:1", D1))
    copy = "127.0.0.1:5100/sources/a.corp/ks/x"
    assert registry.copies == [
        ("a.corp/ks/x@" + D1, f"{copy}:sha256-{'1' * 64}"),  # fetched, pinned to what the HEAD answered
        (f"{copy}:sha256-{'1' * 64}", f"{copy}:1"),  # the copy an offline up falls back to
        (f"{copy}:sha256-{'1' * 64}", "127.0.0.1:5100/labs/lab-a/ks/x:1")]
    assert placer.counts == {"fetched": 1, "linked": 1, "unchanged": 0, "pushed": 0}


def test_a_second_lab_wanting_the_same_digest_fetches_nothing(registry):
    lab_store.Placer(_store("lab-a"), None, lambda line: None).place(
        lab_store.Resolved("ks/x:1", lab_store.FROM_SOURCE, "a.corp/ks/x:1", D1))
    registry.copies.clear()
    second = lab_store.Placer(_store("lab-b"), None, lambda line: None)
    second.place(lab_store.Resolved("ks/x:1", lab_store.FROM_SOURCE, "a.corp/ks/x:1", D1))
    assert registry.copies == [(f"127.0.0.1:5100/sources/a.corp/ks/x:sha256-{'1' * 64}",
                                "127.0.0.1:5100/labs/lab-b/ks/x:1")]
    assert second.counts["fetched"] == 0 and second.counts["linked"] == 1


def test_another_digest_of_the_same_source_tag_is_fetched_and_the_other_lab_keeps_its_own(registry):
    lab_store.Placer(_store("lab-a"), None, lambda line: None).place(
        lab_store.Resolved("ks/x:1", lab_store.FROM_SOURCE, "a.corp/ks/x:1", D1))
    lab_store.Placer(_store("lab-b"), None, lambda line: None).place(
        lab_store.Resolved("ks/x:1", lab_store.FROM_SOURCE, "a.corp/ks/x:1", D2))
    assert registry.held["127.0.0.1:5100/labs/lab-a/ks/x:1"] == D1
    assert registry.held["127.0.0.1:5100/labs/lab-b/ks/x:1"] == D2


def test_a_lab_that_already_holds_the_image_copies_nothing(registry):
    placer = lab_store.Placer(_store(), None, lambda line: None)
    item = lab_store.Resolved("ks/x:1", lab_store.FROM_SOURCE, "a.corp/ks/x:1", D1)
    placer.place(item)
    registry.copies.clear()
    again = lab_store.Placer(_store(), None, lambda line: None)
    again.place(item)
    assert registry.copies == [] and again.counts == {"fetched": 0, "linked": 0, "unchanged": 1, "pushed": 0}
