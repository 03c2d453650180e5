"""A small world trained here: procedural images and captions, a trained tiny SD 1.5 base,
trained experts (LoRAs of every format, fine-tuned checkpoints) and a trained judge.

Not SD 1.5: 64×64 images of coloured shapes. Its numbers measure the method (picking and
merging experts), not photo quality.
"""

from pathlib import Path

WORLD_DIR = Path(__file__).parent / "weights"  # the shipped world (committed fp16 files)
