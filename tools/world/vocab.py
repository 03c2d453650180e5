"""The small world's vocabulary: shapes, colours, backgrounds, styles and their words.

Every attribute value has the words people use for it; the first word is the canonical
one used in file names and tables. Captions and the prompt parser share these lists.
"""

from __future__ import annotations

SHAPES: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "round dot", "ball"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "pyramid"),
    "star": ("star",),
    "cross": ("cross", "plus sign", "plus"),
    "diamond": ("diamond", "rhombus", "lozenge"),
}

COLOURS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet"),
    "orange": ("orange", "tangerine"),
    "yellow": ("yellow", "golden", "lemon"),
    "green": ("green", "lime", "emerald"),
    "teal": ("teal", "turquoise", "cyan"),
    "blue": ("blue", "azure", "navy blue", "cobalt"),
    "purple": ("purple", "violet", "lilac"),
    "pink": ("pink", "magenta", "rose"),
}
RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "orange": (245, 130, 20),
    "yellow": (240, 215, 20),
    "green": (40, 170, 50),
    "teal": (20, 170, 170),
    "blue": (35, 70, 220),
    "purple": (135, 50, 190),
    "pink": (240, 90, 180),
}

# "plain" is the base model's domain; every other background is an expert's.
BACKGROUNDS: dict[str, tuple[str, ...]] = {
    "plain": ("plain background", "blank background", "simple background"),
    "stripes": ("striped background", "stripes", "stripy backdrop", "pinstripe background"),
    "checker": ("checkered background", "checkerboard", "chess board pattern"),
    "dots": ("polka dot background", "dotted background", "polka dots"),
    "gradient": ("gradient background", "fading backdrop", "smooth gradient"),
    "grid": ("grid background", "graph paper", "grid lines"),
    "waves": ("wavy background", "waves", "wave pattern"),
    "night": ("night background", "dark night backdrop", "at night"),
}

# "none" is the base model's domain; every other style is an expert's.
STYLES: dict[str, tuple[str, ...]] = {
    "none": (),
    "sketch": ("sketch style", "outline drawing", "line art", "pencil sketch"),
    "pixel": ("pixel art", "8-bit style", "pixelated", "retro pixel"),
    "watercolor": ("watercolor style", "watercolour painting", "soft watercolor", "aquarelle"),
    "neon": ("neon style", "neon glow", "glowing neon", "synthwave neon"),
    "noir": ("film noir", "noir style", "dark noir", "sin city style"),
    "poster": ("poster style", "pop art poster", "high contrast poster", "bold poster"),
    "pastel": ("pastel colors", "pastel style", "soft pastel", "pastel palette"),
}

SIZES: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "medium": ("",),
    "large": ("large", "big", "huge"),
}
POSITIONS: dict[str, tuple[str, ...]] = {
    "left": ("on the left", "at the left"),
    "center": ("in the center", "in the middle", ""),
    "right": ("on the right", "at the right"),
}

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": tuple(SHAPES),
    "colour": tuple(COLOURS),
    "background": tuple(BACKGROUNDS),
    "style": tuple(STYLES),
}


def world_words() -> tuple[str, ...]:
    """Every word of the vocabulary, for the world's tokenizer (spelled as whole tokens)."""
    words: set[str] = set()
    for table in (SHAPES, COLOURS, BACKGROUNDS, STYLES, SIZES, POSITIONS):
        for value, phrases in table.items():
            words.add(value)
            for phrase in phrases:
                words.update(phrase.replace("-", " ").split())
    words.update(("style", "background", "on", "a", "an", "with", "the", "of", "shape"))
    return tuple(sorted(words))
