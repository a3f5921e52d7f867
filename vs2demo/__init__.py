"""vs2demo: an interactive demo and exploration app for the VideoScore2 video judge."""

__version__ = "0.1.0"

# The three dimensions, in the order the model writes them. Keys are used everywhere (records,
# CSV columns, plots); labels are the words the model itself uses.
DIMENSIONS = ("visual_quality", "text_alignment", "physical_consistency")
DIMENSION_LABELS = {
    "visual_quality": "visual quality",
    "text_alignment": "text-to-video alignment",
    "physical_consistency": "physical/common-sense consistency",
}
