"""vs2demo: an interactive demo and exploration app for the VideoScore2 video judge."""

__version__ = "0.5.0"

from dataclasses import dataclass


@dataclass(frozen=True)
class Dimension:
    """One of the three things the model judges: its key (records, CSV columns, plots), its label
    (the words the model itself writes), how the page titles it, its one-word name, what it judges."""

    key: str
    label: str
    title: str
    short: str
    judges: str


# In the order the model writes them: the one table every module's names are read from.
DIMENSION_TABLE = (
    Dimension("visual_quality", "visual quality", "Visual quality", "Visual", "clarity, smoothness, artifacts"),
    Dimension("text_alignment", "text-to-video alignment", "Text alignment", "Alignment", "fidelity to the prompt"),
    Dimension("physical_consistency", "physical/common-sense consistency", "Physical consistency", "Physical",
              "physics and common sense"),
)
DIMENSIONS = tuple(dimension.key for dimension in DIMENSION_TABLE)
DIMENSION_LABELS = {dimension.key: dimension.label for dimension in DIMENSION_TABLE}
DIMENSION_TITLES = {dimension.key: dimension.title for dimension in DIMENSION_TABLE}
DIMENSION_SHORT = {dimension.key: dimension.short for dimension in DIMENSION_TABLE}
