"""The shipped text: calibration and held-out sentences never overlap."""
from sparsekit.datasets import CALIBRATION_SENTENCES, SENTENCES


def test_calibration_and_held_out_sentences_are_disjoint_and_unique():
    assert len(set(CALIBRATION_SENTENCES)) == len(CALIBRATION_SENTENCES) >= 400
    assert len(set(SENTENCES)) == len(SENTENCES) == 40
    norm = lambda s: " ".join(s.lower().split())  # noqa: E731
    assert not {norm(s) for s in CALIBRATION_SENTENCES} & {norm(s) for s in SENTENCES}
