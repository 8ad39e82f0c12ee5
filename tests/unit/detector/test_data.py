"""choose_samples: the one place that says which images "a fixed sample" of a split is."""

from __future__ import annotations

from detector.data import Sample, choose_samples

SAMPLES = [Sample(key=f"test/{'REAL' if i % 2 else 'FAKE'}/{i}.jpg", location="test.zip", label=i % 2) for i in range(50)]


def test_the_same_seed_picks_the_same_sorted_images_and_another_seed_others() -> None:
    first, again, other = choose_samples(SAMPLES, 10, 3), choose_samples(SAMPLES, 10, 3), choose_samples(SAMPLES, 10, 4)
    assert first == again and first != other
    assert len(set(first)) == 10 and first == sorted(first, key=SAMPLES.index)


def test_no_count_or_a_count_beyond_the_split_means_all_of_it() -> None:
    assert choose_samples(SAMPLES, None, 0) == SAMPLES
    assert sorted(choose_samples(SAMPLES, 500, 0), key=SAMPLES.index) == SAMPLES
