"""Reference prompts: k-means medoids of MiniLM embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from graph.prompts import read_prompts
from tools.calibration.errors import CalibrationError
from tools.calibration.reference import kmeans_medoids, pick_reference_prompts

SAMPLE = (
    Path(__file__).resolve().parent.parent / "fixtures" / "calibration" / "diffusiondb_sample.jsonl"
)


def test_medoids_are_the_central_member_of_each_cluster():
    # three clusters around the axes; in each, the middle vector is the medoid
    vectors, medoids = [], []
    for axis, size in ((0, 5), (1, 3), (2, 4)):
        for j in range(size):
            v = np.full(3, 0.02)
            v[axis] = 1.0
            v[(axis + 1) % 3] = 0.1 * (j - (size - 1) / 2)
            vectors.append(v)
            if j == (size - 1) // 2 and size % 2 == 1:
                medoids.append(len(vectors) - 1)
    picked = kmeans_medoids(np.array(vectors), 3)
    assert picked[0] == medoids[0]  # largest cluster first
    assert picked[1] in (7, 8, 9, 10)  # the 4-member cluster: one of its two central members
    assert picked[1] in (8, 9)
    assert picked[2] == medoids[1]


def test_pick_from_real_prompts_is_deterministic(embedder):
    prompts = list(dict.fromkeys(read_prompts(SAMPLE, limit=80)))
    picked = pick_reference_prompts(prompts, 8, embedder)
    assert len(picked) == len(set(picked)) == 8
    vectors = np.asarray(embedder.embed(prompts), np.float64)
    assert picked == [prompts[i] for i in kmeans_medoids(vectors, 8)]
    assert kmeans_medoids(vectors, 8, seed=0) == kmeans_medoids(vectors, 8, seed=0)


def test_too_few_prompts(embedder):
    with pytest.raises(CalibrationError, match="only 2 distinct prompts"):
        pick_reference_prompts(["a", "b", "a"], 3, embedder)
