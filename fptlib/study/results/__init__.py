"""Results read back and judged, as pure functions over files and frames (no rendering): run results
and learning curves summarised per row and task over seeds, with their provenance checks (`tables`), and
the seed-noise statistics that decide the study's headline claims (`compare`)."""
