"""HTML to PDF with WeasyPrint: one place that turns a rendered template into bytes."""
from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from flask import Flask, current_app, render_template

T = TypeVar("T")


@dataclass
class RenderedPdf:
    """A PDF document and its page count."""

    data: bytes
    pages: int


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one render, then collect what the render left.

    A layout makes millions of short-lived objects, so the collector runs over and over and
    each full pass walks every live object: about 40 % of WeasyPrint's time on our documents.
    The render itself makes little cyclic garbage; collecting the youngest generation once,
    after the document is dropped, frees the same memory (same peak RSS, measured).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # With the collector off, everything made since it was paused is in generation 0. Collect
        # before enabling it again, or the next allocation would start the same pass on its own.
        gc.collect(0)
        if was_enabled:
            gc.enable()


def _caller_with_stack_room(slots: int) -> Callable[[Callable[[], T]], T]:
    """A function that calls its argument from the bottom of a fresh, mostly empty frame-stack chunk.

    CPython 3.11 keeps Python frames in chunks of 16 KiB and maps a chunk, then unmaps it, each
    time the call depth crosses into it (python/cpython#142183, fixed in 3.13 and 3.14 maintenance
    releases). WeasyPrint's recursive layout can loop right on such a boundary: on a chunk of
    bag slips we measured 120,000 mmap/munmap pairs and a second of system time (a fifth of
    the render), or almost none, depending only on how deep the caller happened to be. A
    frame with `slots` unused locals does not fit in a 16 KiB chunk, so calling it opens a
    512 KiB chunk of which the frame takes half: the layout's whole recursion fits in the rest.
    """
    names = " = ".join(f"_{n}" for n in range(slots))
    source = f"def call(function):\n    if False:\n        {names} = None\n    return function()\n"
    namespace: dict = {}
    exec(compile(source, "<app.pdf stack room>", "exec"), namespace)  # noqa: S102 - generated above
    return namespace["call"]


#: Calls a function with about 250 KiB of frame stack free above it (32,000 slots of 8 bytes
#: need a 512 KiB chunk: CPython rounds 8 x (slots + 1,000) up to a power of two).
call_with_stack_room = _caller_with_stack_room(32_000)


def render_pdf(template: str, **context) -> RenderedPdf:
    """Render a Jinja template with print CSS and return the PDF bytes with their page count."""
    return call_with_stack_room(lambda: _render_pdf(template, context))


def _render_pdf(template: str, context: dict) -> RenderedPdf:
    """render_pdf's work, once the frame stack has room."""
    from weasyprint import HTML

    html = render_template(template, **context)
    with cyclic_gc_paused():
        document = HTML(string=html, base_url=current_app.config.get("BASE_URL") or ".").render()
        rendered = RenderedPdf(data=document.write_pdf(), pages=len(document.pages))
        del document  # before the collection, so the layout's cycles go with it
    return rendered


def warm_up(app: Flask) -> None:
    """Import WeasyPrint, load its fonts and compile the document templates once, in this process.

    A worker calls it before forking its pool: each pool process (and each replacement of one
    that grew too big) then starts with all of it in memory it shares with the parent, instead
    of paying about half a second again before its first document.
    """
    from weasyprint import HTML

    for name in app.jinja_env.list_templates(filter_func=lambda name: "/documents/" in name):
        app.jinja_env.get_template(name)
    HTML(string='<p style="font-family: DejaVu Sans">Panier <b>commun</b> <i>€</i></p>').render().write_pdf()
