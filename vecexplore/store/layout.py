"""The run store's layout: every file of a run, named once.

Layout (schema version :data:`SCHEMA_VERSION`)::

    RUN/
      manifest.json     schema version, inputs with content hashes, configs,
                        model/weights, package versions, stage timings, counts
      categories.json   [{"id", "name"}] in class_idx order
      images.parquet    one row per image (image_idx order): ids, path, size, split,
                        per-image outcomes at the build's operating point, x/y,
                        cluster, readability, properties
      objects.parquet   one row per GT and prediction (boxes, score, outcome, match); with the
                        object-level map (``--level objects|both``) also obj_mapped, obj_row,
                        obj_x, obj_y, obj_cluster, obj_cluster_prob (:mod:`vecexplore.mapping.objects`)
      object_embeddings.npy  (M, D) float32 crop embeddings of the objects with obj_row >= 0
                        (row obj_row), zero rows for crops that could not be embedded; optional
      object_slices.parquet  object-level failure slices, ranked (:mod:`vecexplore.analysis.object_slices`);
                        optional
      clusters.parquet  one row per failure slice, ranked worst first (``members``: its
                        HDBSCAN clusters; several when siblings that fail alike merged)
      cluster_tree.parquet  the clusters' ancestors in HDBSCAN's condensed tree (node,
                        parent, size, lambda_birth; nodes 0..K-1 = clusters), so slices can
                        be re-chosen at any operating point (:mod:`vecexplore.mapping.hierarchy`)
      embeddings.npy    (N, D) float32, L2-normalised, zero rows for unreadable images
      metrics.json      the evaluation (``vecexplore evaluate --json`` schema + sweep)
      analysis.json     property importance and per-cluster descriptions
      recommendations.json  ranked findings, each with the image_idx it selects
      label_issues.parquet  one row per suspected label error, most likely first (kind, score,
                        annotation; :mod:`vecexplore.analysis.label_issues`); optional: older
                        runs compute it when read
      near_duplicates.parquet  near-duplicate image pairs, most similar first; optional
      leakage.json      images of other splits with a near duplicate in the train split, and the
                        metrics with and without them (:mod:`vecexplore.analysis.duplicates`);
                        optional: older runs have neither
      words.json        CLIP's words for each slice, or why they are hidden (random weights)
      text_embeddings.npy  (P, D) the vocabulary's text embeddings (trained weights only)
      thumbs.bin/.npy   packed 160 px JPEG thumbnails (see :mod:`vecexplore.thumbs`)
      class_scores.npy  classification only, when the predictions carry per-class scores
      exports/          files exported from the app (``vecexplore serve``)
      selections/       named selections saved from the app (:mod:`vecexplore.selections`)
      tags/             image tags set in the app (:mod:`vecexplore.selections`)

    A comparison run (``vecexplore compare``) is run A's files plus:
      compare.json      the ranking of regressions / improvements (:mod:`vecexplore.compare`)
      metrics_b.json    run B's metrics.json
      objects_b.parquet run B's objects (detection)

The columns of the tables are in :mod:`vecexplore.store.tables` (written) and
:mod:`vecexplore.runcheck` (checked). Tables are named without their
``.parquet`` suffix (:meth:`~vecexplore.store.RunWriter.write_table`,
:meth:`~vecexplore.store.Run.table`); every other file by its full name.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

# ---------------------------------------------------------------- tables (NAME.parquet)
IMAGES = "images"
OBJECTS = "objects"
CLUSTERS = "clusters"
CLUSTER_TREE = "cluster_tree"
LABEL_ISSUES = "label_issues"
NEAR_DUPLICATES = "near_duplicates"
OBJECT_SLICES = "object_slices"
OBJECTS_B = "objects_b"

# ---------------------------------------------------------------- JSON documents
MANIFEST = "manifest.json"
CATEGORIES = "categories.json"
METRICS = "metrics.json"
ANALYSIS = "analysis.json"
RECOMMENDATIONS = "recommendations.json"
COMPARE = "compare.json"
METRICS_B = "metrics_b.json"
LEAKAGE = "leakage.json"
WORDS = "words.json"

# ---------------------------------------------------------------- arrays and packed files
EMBEDDINGS = "embeddings.npy"
OBJECT_EMBEDDINGS = "object_embeddings.npy"
CLASS_SCORES = "class_scores.npy"
TEXT_EMBEDDINGS = "text_embeddings.npy"
THUMBS_INDEX = "thumbs.npy"
THUMBS_DATA = "thumbs.bin"

# ---------------------------------------------------------------- directories
EXPORTS = "exports"
SELECTIONS = "selections"
TAGS = "tags"
#: Infix of the work directory of a build in progress: ``RUN.partial-<random>``.
PARTIAL = ".partial-"


def table_file(name: str) -> str:
    """The file name of table ``name``: ``name.parquet``."""
    return f"{name}.parquet"
