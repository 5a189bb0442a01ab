"""Self-contained HTML report: inline CSS, a few lines of inline JS for sortable tables, PNGs as data URIs.

No external assets, so the file opens the same from an MLflow artifact view, an e-mail or an air-gapped box.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

_CSS = """body{font-family:system-ui,'PingFang SC','Microsoft YaHei',sans-serif;margin:24px;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f7;cursor:pointer;user-select:none}td.num{text-align:right;font-variant-numeric:tabular-nums}
h2{border-bottom:2px solid #dde;padding-bottom:4px;margin-top:32px}.note{color:#666;font-size:13px}img{max-width:100%}"""

_JS = """document.querySelectorAll('table.sortable th').forEach(function(th){th.addEventListener('click',function(){
var t=th.closest('table'),b=t.tBodies[0],i=Array.prototype.indexOf.call(th.parentNode.children,th),d=th.dataset.d==='a'?'d':'a';th.dataset.d=d;
var rows=Array.prototype.slice.call(b.rows);rows.sort(function(x,y){var p=x.cells[i].innerText,q=y.cells[i].innerText,
m=parseFloat(p),n=parseFloat(q),c=(!isNaN(m)&&!isNaN(n))?m-n:p.localeCompare(q,'zh');return d==='a'?c:-c;});
rows.forEach(function(r){b.appendChild(r);});});});"""


def table_html(df: pd.DataFrame, max_rows: int | None = None, float_format: str = "{:.4f}") -> str:
    """A sortable HTML table; text is escaped. When cut to max_rows, says how many rows the CSV has."""
    shown = df if max_rows is None else df.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append(f'<td class="num">{float_format.format(v)}</td>')
            elif isinstance(v, int):
                cells.append(f'<td class="num">{v}</td>')
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    note = f'<p class="note">first {len(shown)} of {len(df)} rows; all rows are in the CSV</p>' if len(shown) < len(df) else ""
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>{note}'


def image_html(path: str | Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render_report(title: str, sections: list[tuple[str, str]]) -> str:
    """A whole HTML page from (heading, html body) sections."""
    parts = [f"<h2>{html.escape(h)}</h2>\n{body}" for h, body in sections]
    return (f'<!DOCTYPE html><html lang="zh"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>\n" + "\n".join(parts)
            + f"<script>{_JS}</script></body></html>")
