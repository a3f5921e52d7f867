"""Scripts that run in the page for Compare and Best of N: a video file the browser cannot play is
said in its own player, and a run brings its status into view.

Gradio's gr.Video toasts "Video not playable" when the browser's <video> element cannot decode a
file (an .avi of MPEG-4 Part 2, an HEVC .mp4 in chromium): the toast covers another player, and the
player itself turns into a red "Error" badge, although the file is fine to score (the model reads its
frames on the server, with PyAV). So a player with PLAYER_CLASS catches that error before Gradio does
and says so in the player instead (style.css shows the note; the Compare section has the rule).
"""

from __future__ import annotations

import json

PLAYER_CLASS = "vs2-player"
UNPLAYABLE_NOTE = ("This browser cannot play this file. It is judged all the same: "
                   "the model reads its frames on the server.")

# For gr.HTML(js_on_load=...): runs once per page (several tabs carry it). Capture listeners on the
# document run before the <video> element's own, so Gradio's handler never sees the error.
UNPLAYABLE_JS = """
if (!window.__vs2Players) {
  window.__vs2Players = true;
  const note = %s;
  const mark = (event, unplayable) => {
    const video = event.target;
    const player = video instanceof HTMLVideoElement ? video.closest('.%s') : null;
    if (!player) return;
    if (unplayable) {
      event.stopPropagation();
      player.dataset.unplayable = note;
    } else {
      delete player.dataset.unplayable;
    }
  };
  document.addEventListener('error', (event) => mark(event, true), true);
  document.addEventListener('loadeddata', (event) => mark(event, false), true);
  document.addEventListener('emptied', (event) => mark(event, false), true);
}
""" % (json.dumps(UNPLAYABLE_NOTE), PLAYER_CLASS)


def scroll_into_view(selector: str) -> str:
    """A page script (an event's `js`) that scrolls `selector` into view if it is not: on a phone the
    status of a run can be a screen or two below its button; on a laptop nothing moves."""
    return f"() => document.querySelector('{selector}')?.scrollIntoView({{block: 'nearest', behavior: 'smooth'}})"
