"""Choosing representative reference prompts: k-means on embeddings, one medoid per cluster."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tools.calibration.errors import CalibrationError


def kmeans_medoids(vectors: np.ndarray, n: int, seed: int = 0) -> list[int]:
    """Row indices of the medoids of ``n`` k-means clusters, largest cluster first.

    The medoid of a cluster is its member with the smallest summed cosine distance to the
    other members (a real prompt, unlike the centroid). Deterministic in ``seed``.
    """
    from sklearn.cluster import KMeans

    if not 1 <= n <= len(vectors):
        raise CalibrationError(
            f"cannot pick {n} prompts from {len(vectors)}: expected 1..{len(vectors)}"
        )
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
    labels = KMeans(n_clusters=n, n_init=10, random_state=seed).fit_predict(unit)
    medoids: list[tuple[int, int]] = []
    for cluster in range(n):
        members = np.flatnonzero(labels == cluster)
        distance = 1.0 - unit[members] @ unit[members].T
        medoids.append((len(members), int(members[distance.sum(axis=1).argmin()])))
    medoids.sort(key=lambda item: (-item[0], item[1]))
    return [index for _, index in medoids]


def pick_reference_prompts(prompts: Sequence[str], n: int, embedder, seed: int = 0) -> list[str]:
    """``n`` representative prompts: medoids of k-means clusters of their MiniLM embeddings."""
    unique = list(dict.fromkeys(p.strip() for p in prompts if p.strip()))
    if len(unique) < n:
        raise CalibrationError(
            f"only {len(unique)} distinct prompts to pick {n} reference prompts from: "
            "give a larger prompt file or a smaller --n"
        )
    vectors = np.asarray(embedder.embed(unique), dtype=np.float64)
    return [unique[i] for i in kmeans_medoids(vectors, n, seed)]
