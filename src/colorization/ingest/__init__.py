"""Turning folders and repositories of photos into a training set (``colorization data build``).

A :class:`Recipe` names the sources (local folders, or git repositories at fixed commits), the
filters (decodes, minimum size, not grayscale), the stored size and format, and the photos the set
must not contain (evaluation folders, hash blocklists, its own near-duplicates).
:func:`build_dataset` writes the set as one folder per source group, with ``manifest.csv`` and
``report.json``; the photos stay out of the repository and the recipe rebuilds them anywhere.
"""

from colorization.ingest.build import DROP_REASONS, BuildReport, GroupReport, build_dataset, report_markdown
from colorization.ingest.hashing import HashIndex, dhash, min_distances, mirror_dhash, read_hash_list, thumbnail
from colorization.ingest.recipe import AGAINST_KINDS, Against, Recipe, SourceSpec, load_recipe, recipe_from_dict
from colorization.ingest.sources import SourceError, find_git_dir, list_source

__all__ = [
    "AGAINST_KINDS",
    "Against",
    "BuildReport",
    "DROP_REASONS",
    "GroupReport",
    "HashIndex",
    "Recipe",
    "SourceError",
    "SourceSpec",
    "build_dataset",
    "dhash",
    "find_git_dir",
    "list_source",
    "load_recipe",
    "min_distances",
    "mirror_dhash",
    "read_hash_list",
    "recipe_from_dict",
    "report_markdown",
    "thumbnail",
]
