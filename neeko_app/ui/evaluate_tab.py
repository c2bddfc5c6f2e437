"""The Evaluate tab: pick a report `neeko eval` wrote and read its tables and plots."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from neeko_app.ui.reports import list_reports, report_markdown


class EvaluateTab:
    """Builds the tab's components (inside a `gr.Blocks`) and wires its events."""

    def __init__(self, reports_dir: Path) -> None:
        self.reports_dir = reports_dir
        with gr.Row():
            self.picker = gr.Dropdown(label="Report", choices=[], elem_id="report-picker",
                                      scale=4)
            refresh = gr.Button("Refresh", elem_id="report-refresh", scale=1)
        self.text = gr.Markdown(elem_id="report-text")
        self.picker.change(report_markdown, self.picker, self.text)
        refresh.click(self.choices, None, self.picker)

    def choices(self) -> gr.Dropdown:
        """The dropdown refilled from the reports folder, the newest report chosen."""
        reports = list_reports(self.reports_dir)
        return gr.Dropdown(choices=reports, value=reports[0][1] if reports else None)
