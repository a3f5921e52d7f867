"""The --out file (`records_io.JsonlRecords`) has the results store's interface: put a record, get it
back by its key when the file is opened again to resume; a failed record without a key is found by
its video's name and prompt; --retry-failed takes the failed ones out."""

from vs2demo.records_io import JsonlRecords, resume_key
from vs2demo.results import DimensionScore, ScoreResult

KEY = "ab" * 32


def scored() -> ScoreResult:
    scores = {name: DimensionScore(4, 3.9, 0.8) for name in ("visual_quality", "text_alignment", "physical_consistency")}
    return ScoreResult(video="a.mp4", prompt="p", model="toy", scores=scores, key=KEY, video_sha256="cd" * 32)


def test_put_then_get_on_resume_by_key_or_by_name_and_prompt(tmp_path):
    out = JsonlRecords(tmp_path / "out.jsonl")
    out.put(ScoreResult(video="gone.mp4", prompt="p", model="toy", error="No such video file"))
    out.put(scored())
    assert out.get(KEY) is None  # not opened to resume: nothing is passed over
    out.close()
    again = JsonlRecords(tmp_path / "out.jsonl", resume=True)
    assert len(again) == 2 and again.keys() == {KEY, resume_key(None, "gone.mp4", "p")}
    assert again.get(KEY).scores["visual_quality"].score == 4
    assert again.get(resume_key(None, "gone.mp4", "p")).error == "No such video file"
    assert again.get(resume_key(None, "gone.mp4", "another prompt")) is None
    again.close()
    retried = JsonlRecords(tmp_path / "out.jsonl", resume=True, retry_failed=True)
    assert retried.keys() == {KEY} and retried.get(KEY).key == KEY  # its line moved up: still found
    assert "1 failed record taken out" in retried.notes[0]
    retried.close()
