"""Image-quality scorers behind one interface: ``score(images, prompts) -> {metric: tensor}``.

CLIPScore, LAION aesthetic, ImageReward, HPS v2.1 and PickScore, loaded offline from local
weights (docs/SCORERS.md), and their combination into one reward (``reward.combine``).
"""
