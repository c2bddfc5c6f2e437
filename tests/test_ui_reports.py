"""The reports the Evaluate tab lists and shows, from folders `write_report` made."""

from __future__ import annotations

import os

from neeko_app.evaluation.report import write_report
from neeko_app.evaluation.scoring import Scores
from neeko_app.ui.reports import FILE_ROUTE, NO_REPORTS, list_reports, report_markdown

SCORES = Scores(replies=2, role_identification=0.5, relevance=0.25, expectation_pass_rate=1.0,
                first_person=1.0, distinct_1=0.5, distinct_2=0.75, looping=0.0, mean_words=9.0,
                tokens_per_second=12.0)


def write_fake_report(folder, systems=("blocks", "profile-prompt")) -> None:
    """A report as `neeko eval` writes it, from made-up scores."""
    folder.mkdir(parents=True)
    table = {system: {"overall": SCORES, "newton": SCORES} for system in systems}
    write_report(folder, table, "Scripted evaluation", {"systems": list(systems)})


def test_reports_are_listed_newest_first_and_broken_folders_skipped(tmp_path):
    write_fake_report(tmp_path / "older")
    write_fake_report(tmp_path / "newer", systems=("blocks",))
    os.utime(tmp_path / "older", (1, 1))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{not json")
    (tmp_path / "broken" / "report.md").write_text("# x")
    (tmp_path / "no-report").mkdir()
    (tmp_path / "stray.txt").write_text("not a folder")
    assert list_reports(tmp_path) == [("newer (blocks)", str(tmp_path / "newer")),
                                      ("older (blocks, profile-prompt)", str(tmp_path / "older"))]
    assert list_reports(tmp_path / "missing") == []


def test_a_report_links_its_plots_through_the_file_route(tmp_path):
    write_fake_report(tmp_path / "run")
    text = report_markdown(tmp_path / "run")
    assert "| blocks | 0.50 | 0.25 |" in text
    plot = (tmp_path / "run" / "role-identification.png").resolve()
    assert f"![role identification]({FILE_ROUTE}{plot})" in text
    assert report_markdown(None) == NO_REPORTS
    assert "Cannot read the report in gone" in report_markdown(tmp_path / "gone")
