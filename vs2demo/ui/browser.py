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
    """A page script (an event's `js`) that brings `selector` to the top of the screen when it is not
    on it: on a phone the status of a run can be a screen or two below its button, and what comes
    after it (the result) should follow it into view; on a laptop it is in view and nothing moves."""
    return ("() => { const e = document.querySelector('%s'); const r = e?.getBoundingClientRect(); "
            "if (r && (r.top < 0 || r.bottom > innerHeight)) e.scrollIntoView({block: 'start'}); }" % selector)
