"""Query, search, save and tag: select images by a condition or a phrase, keep selections by name, tag images.

* **Query**: the language of ``vecexplore export --where`` (:mod:`vecexplore.query`)
  over the image table, with the outcome columns (``error_rate``, ``tp``, ``fp``,
  ``fn``, ...) at the session's operating point and ``'name' in tags``; the
  result is a selection like any other (it combines in the selection mode).
* **Text search**: a phrase ("at night", "in fog") through the run's own CLIP text
  tower (:mod:`vecexplore.text_search`); the ``top`` most similar images become the
  selection, the gallery shows them closest first, and the scatter can be coloured by
  the similarity. Off, with the reason shown, when the run's weights are random.
* **Saved selections**: the current selection under a name, in
  ``RUN/selections/<name>.json`` (:mod:`vecexplore.selections`); a click on a row
  selects it again; ``vecexplore export RUN --selection NAME`` exports it.
* **Tags**: a name added to (or taken from) every selected image, in
  ``RUN/tags/<tag>.json``; a click on a tag's row selects its images.

Writes run as jobs of their own, off the document lock; every failure is shown
in the view's message line, never swallowed.
"""

from __future__ import annotations

import numpy as np

from vecexplore.app import client, ui
from vecexplore.app import events as ev
from vecexplore.app.view import View
from vecexplore.errors import VecexploreError
from vecexplore.eval.outcomes import FP_COLUMNS

#: Outcome columns whose values follow the session's operating point (the rest are the stored ones).
#: How many images a text search can select.
TEXT_TOPS = (25, 50, 100, 200, 500, 1000)
DYNAMIC = ("n_pred", "n_ignored", "tp", "fp", *FP_COLUMNS, "fn", "fn_missed", "precision", "recall", "f1", "error_rate", "correct", "prediction")


def query_columns(data, d) -> dict[str, np.ndarray]:
    """The run's image columns with the outcome columns at the session's operating point."""
    from vecexplore.export import query_columns as stored

    cols = stored(data.run)
    per_image = d.evaluation.per_image
    for c in DYNAMIC:
        if c in per_image:
            cols[c] = per_image[c].to_numpy()
    return cols


class QueryView(View):
    name = "query"
    slot = "tab"
    title = "Query"
    depends = frozenset({"selection"})

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import (
            Button,
            Column,
            ColumnDataSource,
            DataTable,
            Div,
            Row,
            Select,
            TableColumn,
            TextInput,
        )

        self.input = TextInput(placeholder="error_rate > 0.5 and split == 'val'", name="query-input",
                               sizing_mode="stretch_width", title="Select images where")
        self.run_query = Button(label="Select", name="query-run", button_type="primary", width=80, align="end")
        self.message = ui.text_div(text="", name="query-message", css_classes=["vx-caption"],
                                   sizing_mode="stretch_width")
        self.help = Div(text="", name="query-columns", css_classes=["vx-caption", "vx-query-help"],
                        sizing_mode="stretch_width")
        self.text_hidden = self.data.text_search.hidden
        self.phrase = TextInput(placeholder="at night, in fog, a blurry photo", name="text-search",
                                sizing_mode="stretch_width", title="Find images that look like",
                                disabled=self.text_hidden is not None)
        self.text_top = Select(title="Top", value="100", options=[str(n) for n in TEXT_TOPS], name="text-top",
                               width=80, disabled=self.text_hidden is not None)
        self.run_text = Button(label="Find", name="text-search-run", width=70, align="end",
                               disabled=self.text_hidden is not None)
        self.text_message = ui.text_div(text=self.text_hidden or "", name="text-search-message",
                                        css_classes=["vx-caption"], sizing_mode="stretch_width")
        self.save_name = TextInput(placeholder="name", name="selection-name", width=160, title="Save the selection as")
        self.save = Button(label="Save", name="selection-save", width=70, align="end")
        self.saved = ColumnDataSource(data={"name": [], "images": [], "how": [], "created": []}, name="saved-source")
        self.saved_table = DataTable(source=self.saved, name="saved-selections", sizing_mode="stretch_both",
                                     min_height=80, index_position=None, selectable=True, row_height=24,
                                     columns=[TableColumn(field="name", title="Saved selection", width=140),
                                              TableColumn(field="images", title="Images", width=60),
                                              TableColumn(field="how", title="Made by", width=220)])
        self.tag_name = TextInput(placeholder="tag", name="tag-name", width=140, title="Tag the selection")
        self.tag = Button(label="Tag", name="tag-add", width=56, align="end")
        self.untag = Button(label="Untag", name="tag-remove", width=64, align="end")
        self.tags = ColumnDataSource(data={"tag": [], "images": []}, name="tags-source")
        self.tags_table = DataTable(source=self.tags, name="tags", sizing_mode="stretch_both", min_height=80,
                                    index_position=None, selectable=True, row_height=24,
                                    columns=[TableColumn(field="tag", title="Tag", width=140),
                                             TableColumn(field="images", title="Images", width=60)])
        self.root = Column(Row(self.input, self.run_query, sizing_mode="stretch_width"), self.message, self.help,
                           Row(self.phrase, self.text_top, self.run_text, sizing_mode="stretch_width"),
                           self.text_message,
                           Row(Column(Row(self.save_name, self.save), self.saved_table, sizing_mode="stretch_both"),
                               Column(Row(self.tag_name, self.tag, self.untag), self.tags_table,
                                      sizing_mode="stretch_both"), sizing_mode="stretch_both"),
                           sizing_mode="stretch_both", css_classes=["vx-tab-body"])
        self._saved_names: list[str] = []
        self._tag_names: list[str] = []
        self._tags: dict[str, np.ndarray] | None = None

    def layout(self):
        return self.root

    # ------------------------------------------------------------- lists

    def _lists(self):
        from vecexplore.selections import list_selections, load_tags

        saved = list_selections(self.data.run)
        try:
            self._tags = load_tags(self.data.run)
            tag_error = ""
        except VecexploreError as exc:
            self._tags, tag_error = {}, str(exc)
        return saved, self._tags, tag_error

    def compute(self, d):
        saved, tags, tag_error = self._lists()
        cols = sorted(query_columns(self.data, d))
        help_text = ("Columns: " + ", ".join(f"<code>{c}</code>" for c in cols) +
                     ", and <code>'name' in tags</code>. Outcome columns are at the current operating point. Combine "
                     "with <code>and</code> / <code>or</code> / <code>not</code>; lists: <code>cluster in [1, 2]</code>.")
        n = "nothing selected" if d.selection is None else f"{len(d.selection):,} images selected"
        return {"saved": saved, "tags": tags, "help": help_text, "status": tag_error or n}

    def apply(self, p) -> None:
        self._show_lists(p["saved"], p["tags"])
        self.help.text = p["help"]
        if not self.message.text or self.message.text.endswith("selected"):
            self.message.text = p["status"]

    def _show_lists(self, saved: list[dict], tags: dict) -> None:
        self._saved_names = [s["name"] for s in saved]
        self.saved.data = {"name": self._saved_names, "images": [s["images"] for s in saved],
                           "how": [s.get("error") or s["how"] for s in saved], "created": [s["created"] for s in saved]}
        self._tag_names = sorted(tags)
        self.tags.data = {"tag": self._tag_names, "images": [len(tags[t]) for t in self._tag_names]}

    # ------------------------------------------------------------- actions (jobs of their own)

    def wire(self, session) -> None:
        self.run_query.on_click(lambda: session.run(lambda: self._query(session, str(self.input.value or ""))))
        self.input.on_change("value", lambda _a, _o, new: None if session.applying else
                             session.run(lambda: self._query(session, str(new or ""))))
        self.save.on_click(lambda: session.run(lambda: self._save(session, str(self.save_name.value or ""))))
        if self.text_hidden is None:
            def search(phrase=None):
                text = str(self.phrase.value if phrase is None else phrase or "")
                top = client.choice(self.text_top.value, {str(n) for n in TEXT_TOPS})
                session.run(lambda: self._search(session, text, int(top or 100)))
            self.run_text.on_click(lambda: search())
            self.phrase.on_change("value", lambda _a, _o, new: None if session.applying else search(new))
        self.tag.on_click(lambda: session.run(lambda: self._tag(session, str(self.tag_name.value or ""), False)))
        self.untag.on_click(lambda: session.run(lambda: self._tag(session, str(self.tag_name.value or ""), True)))

        def pick(source, names, load):
            def callback(_attr, old, new):
                if session.applying or not len(new):
                    return
                row = client.first_row([r for r in new if r not in set(old)] or new, len(names()))
                if row is None:
                    ui.refused(source.name, new)
                    return
                session.run(lambda: load(session, names()[row]))
            source.selected.on_change("indices", callback)

        pick(self.saved, lambda: self._saved_names, self._load_saved)
        pick(self.tags, lambda: self._tag_names, self._load_tag)

    def _say(self, text: str):
        return lambda: setattr(self.message, "text", text)

    def _query(self, session, text: str):
        from vecexplore.query import evaluate

        if not text.strip():
            return None
        d = session.derived
        try:
            if self._tags is None:
                self._lists()
            mask = evaluate(text, query_columns(self.data, d), n=self.data.num_images, tags=self._tags or {})
        except VecexploreError as exc:
            return self._say(f"Query failed: {exc}")
        images = np.flatnonzero(mask)
        session.emit(ev.Select(images, f"query {text.strip()}"))
        return self._say(f"{len(images):,} images match {text.strip()!r}.")

    def _search(self, session, phrase: str, top: int):
        if not phrase.strip():
            return None
        def say(text: str):
            return lambda: setattr(self.text_message, "text", text)

        try:
            matches = self.data.text_search.search(phrase, top)
        except VecexploreError as exc:
            return say(f"Text search failed: {exc}")
        session.emit(ev.SetView.of(phrase=matches.phrase, sort="text"))
        session.emit(ev.Select(matches.image_idx, f"text “{matches.phrase}” (top {len(matches.image_idx):,})"))
        if not len(matches.image_idx):
            return say(f"No image has an embedding to compare with “{matches.phrase}”.")
        return say(f"The {len(matches.image_idx):,} images closest to “{matches.phrase}”: cosine similarity "
                   f"{float(matches.similarity[0]):.3f} to {float(matches.similarity[-1]):.3f} (median of the run "
                   f"{matches.median:.3f}). The gallery shows them closest first; colour the map by "
                   "“Similarity to the phrase” to see where the phrase lies.")

    def _save(self, session, name: str):
        from vecexplore.selections import save_selection

        d = session.derived
        if d.selection is None:
            return self._say("Nothing is selected: select images first, then save them.")
        try:
            path = save_selection(self.data.run, name, d.selection, how=d.describe())
        except (VecexploreError, OSError) as exc:
            return self._say(f"Save failed: {exc}")
        saved, tags, _ = self._lists()
        say = self._say(f"Saved {len(d.selection):,} images as {path.stem!r} ({path}).")
        return lambda: (self._show_lists(saved, tags), say())

    def _tag(self, session, tag: str, remove: bool):
        from vecexplore.selections import tag_images

        d = session.derived
        if d.selection is None:
            return self._say("Nothing is selected: select images first, then tag them.")
        try:
            count = tag_images(self.data.run, tag, d.selection, remove=remove)
        except (VecexploreError, OSError) as exc:
            return self._say(f"Tagging failed: {exc}")
        saved, tags, _ = self._lists()
        verb = "Removed" if remove else "Added"
        say = self._say(f"{verb} {tag.strip()!r} on {len(d.selection):,} images; {count:,} images carry it.")
        return lambda: (self._show_lists(saved, tags), say())

    def _load_saved(self, session, name: str):
        from vecexplore.selections import load_selection

        try:
            images = load_selection(self.data.run, name)
        except VecexploreError as exc:
            return self._say(f"Cannot select {name!r}: {exc}")
        session.emit(ev.Select(images, f"saved {name}"))
        return self._say(f"Selected the saved selection {name!r} ({len(images):,} images).")

    def _load_tag(self, session, tag: str):
        images = (self._tags or {}).get(tag, np.zeros(0, np.int64))
        session.emit(ev.Select(images, f"tag {tag}"))
        return self._say(f"Selected the {len(images):,} images tagged {tag!r}.")
