"""The self-contained HTML explorer of a dataset's SAE features: ``write_report(ds, "report.html", vs=other)``.

``collect`` gathers what is shown (plain JSON-able dicts, through the public API and the analyses),
``excerpts`` cuts the documents shown and marks their active tokens, ``render`` fills ``template.html`` with
``explorer.css``, ``explorer.js`` and the data; ``write`` checks the parameters and writes the file.
"""
from .write import write_report

__all__ = ["write_report"]
