"""HTML to PDF with WeasyPrint: one place that turns a rendered template into bytes."""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, render_template


@dataclass
class RenderedPdf:
    """A PDF document and its page count."""

    data: bytes
    pages: int


def render_pdf(template: str, **context) -> RenderedPdf:
    """Render a Jinja template with print CSS and return the PDF bytes with their page count."""
    from weasyprint import HTML

    html = render_template(template, **context)
    document = HTML(string=html, base_url=current_app.config.get("BASE_URL") or ".").render()
    return RenderedPdf(data=document.write_pdf(), pages=len(document.pages))
