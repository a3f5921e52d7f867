"""Label as you look: a panel of three rows (one per dimension) of 1-5 buttons under Explore's open
row and under an Evaluate result, driven by the keyboard (1-5 label the marked dimension and mark the
next; ArrowDown/ArrowRight open the next row of Explore's table, ArrowUp/ArrowLeft the previous),
and A/B/tie between the two videos of a Compare. Every label is kept at once in the results store
(vs2demo.labels; no Save button); Explore's table and its metrics against people follow.

Keys act only while the panel has the keyboard (a click in it, or a row just opened), never while a
text box has it.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
import html
import threading
import time
from dataclasses import dataclass, field

import gradio as gr

from .. import DIMENSIONS
from ..errors import UserInputError
from ..labels import (
    PersonLabel, Preference, checked_who_text, kept_browser, labeller, labels_csv, metrics_labels, new_browser_id,
    pairs_csv, person_label, preference, relabel,
)
from . import files
from ..metrics import video_key
from ..plots import SHORT_LABELS
from ..results import ScoreResult
from ..store import ResultStore

SCORES = (1, 2, 3, 4, 5)
# Blind by default: a person who sees the model's score first tends to agree with it (anchoring),
# and agreement measured on such labels flatters the judge.
BLIND_BY_DEFAULT = True
PANEL_OUT = ("label_head", *(f"label_{key}_{n}" for key in DIMENSIONS for n in SCORES),
             *(f"label_{key}_model" for key in DIMENSIONS))


PRIVATE = {"api_visibility": "private"}  # the panels' events: none is an API endpoint
# The sessions whose browser the desk remembers (a page's session ends, and is forgotten, when it is
# closed; this bounds what pages never closed leave behind).
MOST_SESSIONS = 20_000


@dataclass
class LabelDesk:
    """What labelling needs of the app: its results store, whether the store is shared (labels then
    shown to all, as records are), and the most labels one labeller may keep. A session's labels
    are its browser's (`met`: what the browser keeps, labels.labeller): the same after a reload."""

    store: ResultStore
    shared: bool
    most: int
    _lock: threading.Lock = field(default_factory=threading.Lock)
    browsers: OrderedDict = field(default_factory=OrderedDict)  # session -> what its browser keeps
    who_boxes: list = field(default_factory=list)  # each panel's "Your name" (remember_browsers fills them)

    def met(self, session: str, browser) -> None:
        """A page's session and what its browser keeps (labels.kept_browser; None: nothing)."""
        with self._lock:
            self.browsers[session] = browser
            self.browsers.move_to_end(session)
            while len(self.browsers) > MOST_SESSIONS:
                self.browsers.popitem(last=False)

    def left(self, session: str) -> None:
        with self._lock:
            self.browsers.pop(session, None)

    def labeller(self, name, session: str) -> tuple[str, str]:
        """(who, owner) for a session's label: the typed `name` (else its browser's), its browser."""
        return labeller(name, self.browsers.get(session), session)

    def who(self, name, session: str) -> str:
        """Who labels: the typed name, else this browser's (UserInputError for a name that cannot be)."""
        return self.labeller(name, session)[0]

    def owner(self, session: str) -> str:
        return self.labeller("", session)[1]

    def visible(self, session: str) -> list[PersonLabel]:
        return self.store.labels(owner=self.owner(session), shared=self.shared)

    def preferences(self, session: str) -> list[Preference]:
        return self.store.preferences(owner=self.owner(session), shared=self.shared)

    def label_of(self, session: str, video: str, prompt: str, who: str) -> PersonLabel | None:
        key = video_key(video)  # the name as labels keep it
        found = [label for label in self.visible(session) if (label.video, label.prompt, label.who) == (key, prompt, who)]
        return found[-1] if found else None

    def set_score(self, session: str, record: ScoreResult, who: str, dimension: str, score: int) -> PersonLabel:
        """`who`'s label for the record's video and prompt with `dimension` set to `score` (the other
        dimensions as they were), kept. One at a time: two keys pressed quickly both count."""
        with self._lock:
            before = self.label_of(session, record.video, record.prompt, who)
            scores = {**(before.scores if before else {}), dimension: score}
            label = person_label(record.video, record.prompt, scores, who, record.video_sha256)
            self.store.put_label(label, owner=self.owner(session), shared=self.shared, most=self.most)
            return label

    def prefer(self, session: str, video_a: str, video_b: str, prompt: str, choice: str, who: str) -> Preference:
        item = preference(video_a, video_b, prompt, choice, who)
        self.store.put_preference(item, owner=self.owner(session), shared=self.shared, most=self.most)
        return item


def desk_for(store: ResultStore | None, shared: bool, most: int, enabled: bool) -> LabelDesk | None:
    """The desk where labelling is on and a store keeps the labels; None: no panel, no endpoint."""
    return LabelDesk(store, shared, most) if enabled and store is not None else None


# ---- the panel's view: plain values in, what each output shows out -------------------------------------

def head_html(who: str, record: ScoreResult | None, saved: str = "", error: str = "", moves: bool = True) -> str:
    """The panel's first line: whose labels for which video, the keys, and the last save (or why not)."""
    if record is None:
        return ("<div class='vs2-label-head'><b>Your labels</b> · "
                + ("open a row to label it (keys 1-5, arrows to move on).</div>" if moves else
                   "evaluate a video to label it (keys 1-5).</div>"))
    return (f"<div class='vs2-label-head'><b>Your labels</b> for <b>{html.escape(record.video)}</b> as "
            f"<b>{html.escape(who)}</b> · keys 1-5 label the marked (▶) dimension"
            f"{', ↓ → next video, ↑ ← previous' if moves else ''} {save_mark(saved, error)}</div>")


def save_mark(saved: str, error: str) -> str:
    """The last save said (✔ what), or why it was not (✖ why); "" before any."""
    return (f"<span class='vs2-label-error' role='alert'>✖ {html.escape(error)}</span>" if error else
            f"<span class='vs2-label-saved' role='status'>✔ {html.escape(saved)}</span>" if saved else "")


def model_says(record: ScoreResult | None, key: str) -> str:
    if record is None:
        return ""
    dim = record.scores[key]
    if dim.score is None:
        return "<span class='vs2-model-says'>model: –</span>"
    expected = f" ({dim.expected:.2f})" if dim.expected is not None else ""
    return f"<span class='vs2-model-says'>model: {dim.score}{html.escape(expected)}</span>"


def panel_view(record: ScoreResult | None, label: PersonLabel | None, who: str, saved: str = "",
               error: str = "", moves: bool = True) -> dict:
    """The panel for `record` (None: no row open) with `who`'s label: the chosen score of each
    dimension is the primary button (and says so to a screen reader)."""
    chosen = label.scores if label else {}
    view = {"label_head": head_html(who, record, saved, error, moves)}
    for key in DIMENSIONS:
        for n in SCORES:
            picked = chosen.get(key) == n
            view[f"label_{key}_{n}"] = gr.update(variant="primary" if picked else "secondary", interactive=record is not None,
                                                 value=f"{n} ✔" if picked else str(n))
        view[f"label_{key}_model"] = model_says(record, key)
    return view


def only_dimension(view: dict, dimension: str) -> dict:
    """A saved score's panel: its head and its own dimension's buttons only. Keys pressed quickly
    are kept one after another, but their answers may come back in another order: one for the
    first dimension must not set the second's buttons as they were before the second key."""
    return {name: value for name, value in view.items()
            if name == "label_head" or name.startswith(f"label_{dimension}_")}


def labelled_panel(desk: LabelDesk, session: str, record: ScoreResult | None, name, saved: str = "",
                   error: str = "", moves: bool = True) -> dict:
    """The panel for `record` with the label of who labels (a name that cannot be: the browser's, and why)."""
    try:
        who = desk.who(name, session)
    except UserInputError as exc:
        return panel_view(record, None, desk.who("", session), error=str(exc), moves=moves)
    label = desk.label_of(session, record.video, record.prompt, who) if record is not None else None
    return panel_view(record, label, who, saved, error, moves)


def scored_panel(desk: LabelDesk, session: str, record: ScoreResult | None, name, dimension: str, score: int,
                 moves: bool = True) -> tuple[dict, PersonLabel | None]:
    """Keeps who labels' `score` for the record's `dimension`: the panel, and the label kept (None: not kept)."""
    if record is None:
        return panel_view(None, None, "", moves=moves), None
    try:
        who = desk.who(name, session)
        label = desk.set_score(session, record, who, dimension, score)
    except UserInputError as exc:
        return labelled_panel(desk, session, record, name, error=str(exc), moves=moves), None
    return panel_view(record, label, who, saved=f"saved: {SHORT_LABELS[dimension]} {score}", moves=moves), label


# ---- layout ---------------------------------------------------------------------------------------------

KEYS_JS = r"""
if (!window.vs2Labelling) {
  window.vs2Labelling = true;
  const DIMS = ["visual_quality", "text_alignment", "physical_consistency"];
  // Gradio gives a group's id and classes to two nested elements: the panel is the outer one.
  const panelOf = (el) => {
    let panel = (el && el.closest) ? el.closest(".vs2-labelling") : null;
    while (panel && panel.parentElement && panel.parentElement.closest(".vs2-labelling")) {
      panel = panel.parentElement.closest(".vs2-labelling");
    }
    return panel;
  };
  window.vs2PanelOf = panelOf;
  const prefixOf = (panel) => panel.id.replace(/-labelling$/, "");
  const mark = (panel, i) => {
    panel.dataset.focus = String(i);
    DIMS.forEach((dim, j) => {
      const row = document.getElementById(`${prefixOf(panel)}-label-${dim}`);
      if (row) { row.classList.toggle("vs2-label-focused", i === j); row.setAttribute("aria-current", i === j ? "true" : "false"); }
    });
  };
  // A row is opening (an arrow key pressed, a row of the table clicked) until vs2LabelMark says it is
  // open: keys then would label the row being left. A stale mark (an answer that never came) lapses.
  const MOVE_LAPSES_MS = 10000;
  const moving = (panel) => panel.dataset.moving && Date.now() - Number(panel.dataset.moving) < MOVE_LAPSES_MS;
  window.vs2LabelMoving = (id) => { const panel = document.getElementById(id); return Boolean(panel && moving(panel)); };
  window.vs2LabelMark = (id, i, focus = true) => {
    const panel = document.getElementById(id);
    if (panel) { delete panel.dataset.moving; mark(panel, i); if (focus) panel.focus({preventScroll: true}); }
  };
  const press = (id) => { const button = document.getElementById(id); if (button && !button.disabled) { button.click(); return true; } return false; };
  document.addEventListener("keydown", (event) => {
    const panel = panelOf(document.activeElement);
    if (!panel || event.ctrlKey || event.metaKey || event.altKey) return;
    if (document.activeElement.matches("input:not([type=checkbox]):not([type=radio]), textarea, select, [contenteditable=true]")) return;
    const prefix = prefixOf(panel);
    const at = Number(panel.dataset.focus || 0);
    const key = event.key.toLowerCase();
    let done = false;
    if (moving(panel) && /^([1-5abt]|arrow(up|down|left|right))$/.test(key)) {
      event.preventDefault();  // another row is opening: a key now would label the row it leaves
      event.stopPropagation();
      return;
    }
    if (/^[1-5]$/.test(key)) {
      done = press(`${prefix}-label-${DIMS[at]}-${key}`);
      if (done) mark(panel, (at + 1) % DIMS.length);
    } else if (key === "arrowdown" || key === "arrowright" || key === "arrowup" || key === "arrowleft") {
      const forward = key === "arrowdown" || key === "arrowright";
      done = press(`${prefix}-label-${forward ? "next" : "previous"}`);
      if (done) panel.dataset.moving = String(Date.now());  // until the row has opened (vs2LabelMark)
    } else if (key === "a" || key === "b" || key === "t") {
      done = press(`${prefix}-prefer-${key === "t" ? "tie" : key}`);
    }
    // Handled here: not also by the table above (Gradio's grid moves its selection on arrow keys).
    if (done) { event.preventDefault(); event.stopPropagation(); panel.focus({preventScroll: true}); }
  }, true);
  document.addEventListener("click", (event) => {
    // A click on a row of a table that opens rows ("X-table") opens it under the panel "X-labelling".
    const cell = event.target.closest ? event.target.closest(".vs2-opens-rows [role=gridcell]") : null;
    const table = cell && cell.closest(".vs2-opens-rows[id$='-table']");
    const opening = table && document.getElementById(table.id.replace(/-table$/, "-labelling"));
    if (opening) opening.dataset.moving = String(Date.now());
  }, true);
  document.addEventListener("click", (event) => {
    const button = event.target.closest ? event.target.closest("button[id]") : null;
    const panel = panelOf(button);
    const match = button && button.id.match(/-label-([a-z_]+)-([1-5])$/);
    if (panel && match && event.isTrusted) mark(panel, (DIMS.indexOf(match[1]) + 1) % DIMS.length);
  });
}
// Where this panel is: it takes the keyboard (tabindex) and, when it first has it, marks the first dimension.
const panel = window.vs2PanelOf(element);
if (panel && !panel.hasAttribute("tabindex")) {
  panel.tabIndex = 0;
  panel.addEventListener("focusin", () => { if (!panel.dataset.focus) window.vs2LabelMark(panel.id, 0, false); });
}
"""


def panel(prefix: str, moves: bool = True) -> dict:
    """The panel's components, by name (PANEL_OUT, and "who", "blind", "next", "previous"). Element
    ids start with `prefix`: the keys find the buttons by them."""
    ui: dict = {}
    with gr.Group(elem_id=f"{prefix}-labelling", elem_classes=["vs2-labelling"]):
        ui["label_head"] = gr.HTML(head_html("", None, moves=moves), elem_id=f"{prefix}-label-head", js_on_load=KEYS_JS)
        for key in DIMENSIONS:
            with gr.Row(elem_id=f"{prefix}-label-{key}", elem_classes=["vs2-label-row"], equal_height=True):
                gr.HTML(f"<span class='vs2-label-name'>{html.escape(SHORT_LABELS[key])}</span>", js_on_load=None,
                        elem_classes=["vs2-label-name-cell"])
                for n in SCORES:
                    ui[f"label_{key}_{n}"] = gr.Button(str(n), size="sm", min_width=44, interactive=False,
                                                       elem_id=f"{prefix}-label-{key}-{n}",
                                                       elem_classes=["vs2-label-score"])
                ui[f"label_{key}_model"] = gr.HTML("", js_on_load=None, elem_classes=["vs2-label-model"])
        with gr.Row(equal_height=True):
            ui["who"] = gr.Textbox(label="Your name (optional: else this browser's name)", max_length=60, scale=3,
                                   min_width=200, elem_id=f"{prefix}-label-who")
            # Interactive though no event reads it: the stylesheet hides the model's scores while it is ticked.
            ui["blind"] = gr.Checkbox(BLIND_BY_DEFAULT, label="Label blind", info="hide the model's scores", scale=2,
                                      min_width=160, interactive=True, elem_id=f"{prefix}-label-blind")
        if moves:  # pressed by the arrow keys; on a phone, tapped
            with gr.Row():
                ui["previous"] = gr.Button("↑ Previous video", size="sm", elem_id=f"{prefix}-label-previous")
                ui["next"] = gr.Button("↓ Next video", size="sm", elem_id=f"{prefix}-label-next")
        export_row(ui, prefix, "Labels: `python -m vs2demo metrics --labels` (or Explore) reads them")
    return ui


def export_row(ui: dict, prefix: str, file_label: str) -> None:
    """A panel's export buttons (wire_exports) and the file they give."""
    with gr.Row():
        ui["export_labels"] = gr.Button("Export the labels (CSV)", size="sm", elem_id=f"{prefix}-export-labels")
        ui["export_pairs"] = gr.Button("Export the A/B preferences (CSV)", size="sm", elem_id=f"{prefix}-export-pairs")
    ui["labels_file"] = gr.File(label=file_label, visible=False, elem_id=f"{prefix}-labels-file")


# ---- who labels, kept per browser ---------------------------------------------------------------------
# Fixed, not Gradio's random ones (new at each start): what a browser keeps must outlive a restart of
# the app. The "secret" is no secret (Gradio hands it to the page, which decrypts with it); what is
# kept is no credential, only a random id and a name.
BROWSER_KEY = "vs2demo-labeller"


def browser_state() -> gr.BrowserState:
    return gr.BrowserState(None, storage_key=BROWSER_KEY, secret=BROWSER_KEY)


def arrival(kept) -> tuple[dict, bool]:
    """What a browser arriving keeps (labels.kept_browser), or a new id for one keeping nothing
    usable; and whether it is new (then the browser is told to keep it)."""
    known = kept_browser(kept)
    return (known, False) if known is not None else ({"id": new_browser_id(), "name": ""}, True)


def remember_browsers(demo: gr.Blocks, desk: LabelDesk) -> None:
    """Who labels, kept in each browser's localStorage: a random id made on its first visit (its
    labels' owner, labels.labeller) and the name typed in any panel (each panel's "Your name" shows
    it again after a reload). Called once the panels are built (desk.who_boxes)."""
    browser, boxes = browser_state(), list(desk.who_boxes)
    quick = {"api_visibility": "private", "queue": False}

    def arrived(request: gr.Request, kept):
        known, new = arrival(kept)
        desk.met(request.session_hash or "", known)
        return (known if new else gr.skip(), *(known["name"] or gr.skip() for _ in boxes))

    def named(request: gr.Request, kept, name):
        session = request.session_hash or ""
        known = desk.browsers.get(session) or kept_browser(kept)
        try:
            name = checked_who_text(name)
        except UserInputError:  # the panel says why; nothing is kept
            known = None
        if known is None:
            return tuple(gr.skip() for _ in range(len(boxes) + 1))
        known = {**known, "name": name}
        desk.met(session, known)
        return (known, *(name for _ in boxes))

    def left(request: gr.Request):
        desk.left(request.session_hash or "")

    demo.load(arrived, inputs=[browser], outputs=[browser, *boxes], **quick)
    for box in boxes:
        for event in (box.submit, box.blur):
            event(named, inputs=[browser, box], outputs=[browser, *boxes], **quick)
    demo.unload(left)


def with_request(handler, *first):
    """`handler(*first, request, *inputs)` as a Gradio handler: Gradio hands the request only to a
    parameter annotated gr.Request, which a functools.partial hides from it."""
    def run(request: gr.Request, *inputs):
        return handler(*first, request, *inputs)
    return run


def wire_exports(ui: dict, desk: LabelDesk) -> None:
    """The panel's export buttons: the labels (and the preferences) this session may see, as the
    CSVs the metrics read. Its "Your name" is one of those remember_browsers fills."""
    desk.who_boxes.append(ui["who"])
    def export(what: str, request):
        session = request.session_hash or ""
        text = labels_csv(desk.visible(session)) if what == "labels" else pairs_csv(desk.preferences(session))
        return gr.update(value=files.write_download(text, f"vs2-{what}", ".csv"), visible=True)

    for what in ("labels", "pairs"):
        ui[f"export_{what}"].click(with_request(export, what), outputs=[ui["labels_file"]],
                                   api_visibility="private")


def score_buttons(ui: dict):
    """(dimension, score, button) for the panel's fifteen buttons."""
    return [(key, n, ui[f"label_{key}_{n}"]) for key in DIMENSIONS for n in SCORES]


# ---- Explore ----------------------------------------------------------------------------------------------

def explore_record(ctx, handle, number) -> tuple[object, ScoreResult | None]:
    current = ctx.sets.get(handle)
    if current is None or number is None or not 0 <= number < len(current.records):
        return current, None
    return current, current.record(number)


def explore_panel(ctx, session: str, handle, number, name, saved: str = "", error: str = "") -> dict:
    """The panel for Explore's open row `number`, with this person's label for it."""
    return labelled_panel(ctx.desk, session, explore_record(ctx, handle, number)[1], name, saved, error)


def give_score(ctx, session: str, handle, number, name, dimension: str, score: int) -> tuple[dict, bool]:
    """Keeps the person's `score` for the open row's `dimension` and puts it into the loaded set; the
    panel (and whether the set changed, so that the table and the metrics follow)."""
    current, record = explore_record(ctx, handle, number)
    view, label = scored_panel(ctx.desk, session, record, name, dimension, score)
    if label is None:
        return view, False
    # What Explore compares with the model: every visible label of this video, as a load gives them.
    mine = [kept for kept in ctx.desk.visible(session) if kept.video == label.video]
    relabel(current, metrics_labels(mine)[0])
    return view, True


def next_number(current, query, number, step: int) -> int | None:
    """The record `step` rows after (or before) `number` in the table's order; the first row when
    `number` is not among them; None past either end."""
    from ..explore import select

    order = list(select(current, query)["#"]) if current is not None else []
    if not order:
        return None
    if number not in order:
        return order[0]
    at = order.index(number) + step
    return order[at] if 0 <= at < len(order) else None


# Once a row opens (a click in the table, or an arrow key), the panel has the keyboard and marks the
# first dimension; the video plays (muted: a browser plays no sound a key press did not ask for).
FOCUS_JS = "() => { window.vs2LabelMark && window.vs2LabelMark('explore-labelling', 0); }"
PLAY_JS = ("() => { window.vs2LabelMark && window.vs2LabelMark('explore-labelling', 0);"
           " setTimeout(() => { const video = document.querySelector('#explore-video video');"
           " if (video) { video.muted = true; video.play().catch(() => {}); } }, 300); }")


def wire_explore(ui: dict, ctx) -> None:
    """The panel's events in Explore: a row opened shows its label; a score is kept and the table and
    the metrics follow (the figures at once, their intervals after); the arrows open the next row."""
    from . import explore as tab  # the tab builds this panel: imported when it wires it

    ui["label_row"] = gr.State(None)
    panel_out = [ui[name] for name in PANEL_OUT]
    filters_in = [ui[name] for name in tab.QUERY_FIELDS]

    def session(request: gr.Request) -> str:
        return request.session_hash or ""

    def opened(evt: gr.SelectData, request: gr.Request, handle, name):
        number = tab.row_number(evt.row_value)
        return (number, *tab.ordered(PANEL_OUT, explore_panel(ctx, session(request), handle, number, name)))

    def scored(dimension, score, request, handle, number, name):
        view, changed = give_score(ctx, session(request), handle, number, name, dimension, score)
        if not changed:
            return (*tab.ordered(PANEL_OUT, view), gr.skip())
        return (*tab.ordered(PANEL_OUT, only_dimension(view, dimension)), time.monotonic_ns())

    def moved(step, request, handle, number, name, videos_by_name, *query_values):
        current = ctx.sets.get(handle)
        query = tab.query_of(query_values)
        target = next_number(current, query, number, step)
        if target is None:  # past the last row (or the first): nothing opens, the panel says so
            view = explore_panel(ctx, session(request), handle, number, name,
                                 error="no next row" if step > 0 else "no previous row")
            return (number, *tab.ordered(tab.DETAIL_OUT, {}), *tab.ordered(PANEL_OUT, view))
        detail = tab.row_detail(ctx, current, target, videos_by_name)
        return (target, *tab.ordered(tab.DETAIL_OUT, tab.detail_shown(detail)),
                *tab.ordered(PANEL_OUT, explore_panel(ctx, session(request), handle, target, name)))

    def followed(handle, number, pairs, kind, slice_by, show_slices, *query_values):
        """The table, the open row's heading (its people's labels) and the figures without their
        intervals, in one answer once the last key's label is in."""
        current, record = explore_record(ctx, handle, number)
        head = tab.row_heading(current, record) if record is not None else gr.skip()
        return (*tab.ordered(tab.ROWS_OUT, tab.rows_shown(tab.rows_view(current, tab.query_of(query_values), handle))),
                head, *tab.shown_metrics(ctx, False, handle, pairs, kind, slice_by, show_slices, *query_values))

    def refreshed(name, request: gr.Request, handle, number):
        return tab.ordered(PANEL_OUT, explore_panel(ctx, session(request), handle, number, name))

    wire_exports(ui, ctx.desk)
    ui["grid"].select(opened, inputs=[ui["collection"], ui["who"]], outputs=[ui["label_row"], *panel_out],
                      **PRIVATE).then(None, js=FOCUS_JS, **PRIVATE)
    metrics_in = [ui[name] for name in ("collection", "pairs", "kind", "slice_by", "slices_open")] + filters_in
    metrics_out = [ui[name] for name in tab.METRICS_OUT]
    # Saving is immediate: the panel says "saved" at once. The table's people column and the figures
    # follow, then their intervals (seconds at 10,000 rows), once for a burst of keys: each save
    # stamps `label_changed` and only the last stamp's refresh runs to its end.
    ui["label_changed"] = gr.State(0)
    for dimension, score, button in score_buttons(ui):
        button.click(with_request(scored, dimension, score), inputs=[ui["collection"], ui["label_row"], ui["who"]],
                     outputs=[*panel_out, ui["label_changed"]], **PRIVATE)
    ui["label_changed"].change(
        followed, inputs=[ui["collection"], ui["label_row"], *metrics_in[1:]],
        outputs=[*(ui[name] for name in tab.ROWS_OUT), ui["head"], *metrics_out], trigger_mode="always_last",
        **PRIVATE).then(functools.partial(tab.shown_metrics, ctx, True), inputs=metrics_in, outputs=metrics_out,
                        **PRIVATE)
    for name, step in (("next", 1), ("previous", -1)):
        ui[name].click(with_request(moved, step), inputs=[ui["collection"], ui["label_row"], ui["who"],
                                                               ui["videos_by_name"], *filters_in],
                       outputs=[ui["label_row"], *(ui[out] for out in tab.DETAIL_OUT), *panel_out],
                       **PRIVATE).then(None, js=PLAY_JS, **PRIVATE)
    for event in (ui["who"].submit, ui["who"].blur):
        event(refreshed, inputs=[ui["who"], ui["collection"], ui["label_row"]], outputs=panel_out, **PRIVATE)


# ---- Evaluate -------------------------------------------------------------------------------------------

def evaluated(view) -> ScoreResult | None:
    """The record an Evaluate view shows once its run has ended (None while it runs, or before)."""
    return view.record if view is not None and view.state != "busy" else None


def wire_evaluate(ui: dict, desk: LabelDesk, view_state, runs: list) -> None:
    """The panel under an Evaluate result: shown for each run's record once the run ends (`runs`:
    the tab's run events); keys 1-5 label it as in Explore."""
    panel_out = [ui[name] for name in PANEL_OUT]

    def shown(request, view, name):
        return ordered_panel(labelled_panel(desk, request.session_hash or "", evaluated(view), name, moves=False))

    def scored(dimension, score, request, view, name):
        view, label = scored_panel(desk, request.session_hash or "", evaluated(view), name, dimension, score, False)
        return ordered_panel(only_dimension(view, dimension) if label is not None else view)

    wire_exports(ui, desk)
    for event in (*(run.then for run in runs), ui["who"].submit, ui["who"].blur):
        event(with_request(shown), inputs=[view_state, ui["who"]], outputs=panel_out, **PRIVATE)
    for dimension, score, button in score_buttons(ui):
        button.click(with_request(scored, dimension, score), inputs=[view_state, ui["who"]], outputs=panel_out,
                     **PRIVATE)


def ordered_panel(view: dict) -> tuple:
    """A panel view in PANEL_OUT's order; what it leaves out stays as it is."""
    return tuple(view[name] if name in view else gr.skip() for name in PANEL_OUT)


# ---- Compare: A, B or a tie -------------------------------------------------------------------------------
# Where people would say which of two videos is better: Compare holds them side by side, plays them
# together, and judges both against one prompt. Explore has no pairs view: its rows are one video each.

CHOICES = (("a", "A is better"), ("b", "B is better"), ("tie", "A tie"))
# Each choice's button, with its key.
CHOICE_BUTTONS = {choice: f"{text} ({'T' if choice == 'tie' else choice.upper()})" for choice, text in CHOICES}
PAIR_OUT = ("pair_head", *(f"prefer_{choice}" for choice, _ in CHOICES))


def pair_panel(prefix: str = "compare") -> dict:
    """A, B and tie buttons (keys A, B, T while the panel has the keyboard), a name, the exports."""
    ui: dict = {}
    with gr.Group(elem_id=f"{prefix}-labelling", elem_classes=["vs2-labelling"]):
        ui["pair_head"] = gr.HTML(pair_head(None), elem_id=f"{prefix}-pair-head", js_on_load=KEYS_JS)
        with gr.Row():
            for choice, text in CHOICE_BUTTONS.items():
                ui[f"prefer_{choice}"] = gr.Button(text, size="sm", interactive=False,
                                                   elem_id=f"{prefix}-prefer-{choice}")
        ui["who"] = gr.Textbox(label="Your name (optional: else this browser's name)", max_length=60,
                               elem_id=f"{prefix}-label-who")
        export_row(ui, prefix, "Preferences: `python -m vs2demo metrics --pairs` reads them")
    return ui


def compared_pair(view, prompts: list[str], shared: str) -> tuple[str, str, str] | None:
    """(video A, video B, prompt) of a finished Compare of exactly two videos judged against one
    prompt; None otherwise (the panel then says why)."""
    if view is None or view.running or len(view.slots) != 2 or len(view.names) != 2:
        return None
    used = {(prompts[slot] or "").strip() or (shared or "").strip() for slot in view.slots}
    return (*view.names, used.pop()) if len(used) == 1 else None


def pair_head(pair, who: str = "", choice: str | None = None, error: str = "") -> str:
    if pair is None:
        return ("<div class='vs2-label-head'><b>Which is better?</b> Compare exactly two videos against one prompt, "
                "then say A, B or a tie (keys A, B, T).</div>")
    mark = save_mark(f"saved: {dict(CHOICES)[choice]}" if choice else "", error)
    return (f"<div class='vs2-label-head'><b>Which is better?</b> A: <b>{html.escape(pair[0])}</b> · B: "
            f"<b>{html.escape(pair[1])}</b> · as <b>{html.escape(who)}</b> · keys A, B, T {mark}</div>")


def pair_view(pair, who: str, chosen: str | None, saved: bool = False, error: str = "") -> dict:
    view = {"pair_head": pair_head(pair, who, chosen if saved else None, error)}
    for choice, text in CHOICE_BUTTONS.items():
        picked = chosen == choice
        view[f"prefer_{choice}"] = gr.update(interactive=pair is not None, variant="primary" if picked else "secondary",
                                             value=text + (" ✔" if picked else ""))
    return view


def wire_compare(ui: dict, desk: LabelDesk, view_state, prompts: list, shared, run) -> None:
    """The A/B/tie panel under a Compare: shown for each finished run of two videos (`run`: the
    run's event); a choice is kept at once."""
    out = [ui[name] for name in PAIR_OUT]
    inputs = [view_state, *prompts, shared, ui["who"]]

    def current(request, values):
        *prompt_values, shared_prompt, name = values[1:]
        session = request.session_hash or ""
        return compared_pair(values[0], prompt_values, shared_prompt), session, name

    def kept_choice(session, pair, who) -> str | None:
        """This person's kept choice for the pair, as A and B stand now (it may have been given the
        other way round)."""
        a, b = video_key(pair[0]), video_key(pair[1])
        for item in reversed(desk.preferences(session)):
            if item.who == who and item.prompt == pair[2] and {item.video_a, item.video_b} == {a, b}:
                return item.preference if item.video_a == a else {"a": "b", "b": "a", "tie": "tie"}[item.preference]
        return None

    def shown(request, *values):
        pair, session, name = current(request, values)
        try:
            who = desk.who(name, session)
        except UserInputError as exc:
            return tuple(pair_view(pair, desk.who("", session), None, error=str(exc)).values())
        return tuple(pair_view(pair, who, kept_choice(session, pair, who) if pair else None).values())

    def chose(choice, request, *values):
        pair, session, name = current(request, values)
        if pair is None:
            return tuple(pair_view(None, "", None).values())
        try:
            who = desk.who(name, session)
            desk.prefer(session, pair[0], pair[1], pair[2], choice, who)
        except UserInputError as exc:
            return tuple(pair_view(pair, desk.who("", session), None, error=str(exc)).values())
        return tuple(pair_view(pair, who, choice, saved=True).values())

    wire_exports(ui, desk)
    for event in (run.then, ui["who"].submit, ui["who"].blur):
        event(with_request(shown), inputs=inputs, outputs=out, **PRIVATE)
    for choice, _ in CHOICES:
        ui[f"prefer_{choice}"].click(with_request(chose, choice), inputs=inputs, outputs=out, **PRIVATE)
