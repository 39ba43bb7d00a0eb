"""A report as a list of blocks, rendered to Markdown (figures as files) or self-contained HTML.

The HTML embeds every figure as a base64 PNG data URI and carries its CSS inline: it
references no file and no URL, so it can be mailed or attached to a ticket as one file.
All text is escaped; the blocks hold plain text, never markup.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass

VERDICTS = ("PASS", "FAIL", "INCONCLUSIVE")


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Skipped:
    """A section the run directory cannot fill: one line saying which and why."""

    section: str
    why: str


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    css_id: str | None = None  # an id for the HTML table (the run header: id="run")


@dataclass(frozen=True)
class Figure:
    """A PNG figure: ``name`` is the file written beside the report (``report_*.png``)."""

    name: str
    png: bytes
    caption: str


Block = Heading | Paragraph | Skipped | Table | Figure


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, blocks: list[Block]) -> str:
    """Markdown; figures link to their PNG files by relative name."""
    out = [f"# {title}", ""]
    for b in blocks:
        if isinstance(b, Heading):
            out += [f"{'#' * b.level} {b.text}", ""]
        elif isinstance(b, Paragraph):
            out += [b.text, ""]
        elif isinstance(b, Skipped):
            out += [f"*Skipped: {b.section}: {b.why}*", ""]
        elif isinstance(b, Table):
            out += ["| " + " | ".join(_md_cell(c) for c in b.header) + " |", "|" + "---|" * len(b.header)]
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif isinstance(b, Figure):
            out += [f"![{_md_cell(b.caption)}]({b.name})", "", f"*{b.caption}*", ""]
    return "\n".join(out)


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
       max-width: 1000px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #d0d6e0; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #e3e7ee; padding-bottom: .2em; }
h3 { font-size: 1.05em; margin-top: 1.2em; }
table { border-collapse: collapse; margin: .6em 0 1em; font-size: .92em; }
th, td { border: 1px solid #d0d6e0; padding: .25em .6em; text-align: left; vertical-align: top; }
thead th { background: #eef1f6; }
table#run th { background: #f6f7fa; font-weight: 600; white-space: nowrap; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e7ee; }
figcaption { font-size: .9em; color: #4a5363; }
p.skipped { color: #6b7384; font-style: italic; }
.v-PASS { background: #dff3e3; color: #17612a; font-weight: 600; }
.v-FAIL { background: #fbe0e0; color: #8c1c1c; font-weight: 600; }
.v-INCONCLUSIVE { background: #fff3d6; color: #7a5300; font-weight: 600; }
"""


def _html_cell(tag: str, text: str) -> str:
    cls = f' class="v-{text}"' if text in VERDICTS else ""
    return f"<{tag}{cls}>{html.escape(text)}</{tag}>"


def _html_table(t: Table) -> str:
    ident = f' id="{html.escape(t.css_id)}"' if t.css_id else ""
    if t.css_id == "run":  # key/value header: the first column names the fact
        rows = "".join(
            f"<tr>{_html_cell('th', r[0])}{''.join(_html_cell('td', c) for c in r[1:])}</tr>" for r in t.rows
        )
        return f"<table{ident}><tbody>{rows}</tbody></table>"
    head = "".join(_html_cell("th", c) for c in t.header)
    rows = "".join("<tr>" + "".join(_html_cell("td", c) for c in r) + "</tr>" for r in t.rows)
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def render_html(title: str, blocks: list[Block]) -> str:
    """One self-contained HTML page: inline CSS, figures as ``data:image/png;base64`` URIs."""
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            out.append(f"<p>{html.escape(b.text)}</p>")
        elif isinstance(b, Skipped):
            out.append(f'<p class="skipped">Skipped: {html.escape(b.section)}: {html.escape(b.why)}</p>')
        elif isinstance(b, Table):
            out.append(_html_table(b))
        elif isinstance(b, Figure):
            data = base64.b64encode(b.png).decode("ascii")
            out.append(
                f'<figure><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(b.caption)}</figcaption></figure>"
            )
    body = "\n".join(out)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )
