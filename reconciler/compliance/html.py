"""HTML form of a `ComplianceReport`: ONE self-contained file (pure).

Contract: `render_html(report)` returns a complete HTML document with no external asset (inline
CSS and one small inline script, no network fetch): the summary (applications and resources by
status, per layer), a sortable table with one row per application (click a header; numbers sort
as numbers, statuses by severity) and a per-application drill-down: each application's name
links to `#app=NAME`, which shows its layers and targets with their counts, last change and
open violations. The drill-down is drawn by the script from the report's data embedded as JSON
(escaped so that no `<` `>` `&` appears in it), which keeps 10,000 applications under 5 MB;
the script writes text with `textContent` only. Every text from the report that reaches the
markup goes through `html.escape`. Without JavaScript the tables still show every figure.
"""
from __future__ import annotations

import html
import json
from typing import Any

from reconciler.compliance.model import STATUSES, AppCompliance, ComplianceReport, iso
from reconciler.model import Layer

_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}
th{background:#f3f3f3;position:sticky;top:0}table.sortable th{cursor:pointer}
th.asc:after{content:" \\25B2"}th.desc:after{content:" \\25BC"}td.n,th.n{text-align:right}
.in-sync{color:#17692b}.drifted{color:#b3261e;font-weight:600}.unknown{color:#7a5c00}.unreachable{color:#8a3ab9}
#apps td{white-space:nowrap}#apps td:nth-child(n+6){text-align:right}
#apps td:nth-child(3),#apps td:nth-child(5){font-family:monospace}
.meta{color:#555}#drill{border:1px solid #ccc;padding:.5em 1em;margin-bottom:1.5em}code{font-size:12px}"""

_JS = r"""(function(){
var SEV={"in-sync":0,"unknown":1,"unreachable":2,"drifted":3};
function key(row,i,t){var c=row.cells[i];if(!c)return "";
var v=c.hasAttribute("data-v")?c.getAttribute("data-v"):c.textContent;
if(t==="n"){var f=parseFloat(v);return isNaN(f)?-Infinity:f}if(t==="s"){return v in SEV?SEV[v]:-1}return v}
function sort(th){var table=th.closest("table"),tb=table.tBodies[0],i=th.cellIndex,t=th.getAttribute("data-t")||"";
var asc=!th.classList.contains("asc");
Array.prototype.forEach.call(th.parentNode.cells,function(h){h.classList.remove("asc","desc")});
th.classList.add(asc?"asc":"desc");var rows=Array.prototype.map.call(tb.rows,function(r){return [key(r,i,t),r]});
rows.sort(function(a,b){return (a[0]<b[0]?-1:a[0]>b[0]?1:0)*(asc?1:-1)});var f=document.createDocumentFragment();
rows.forEach(function(r){f.appendChild(r[1])});tb.appendChild(f)}
function wire(root){Array.prototype.forEach.call(root.querySelectorAll("table.sortable th"),function(th){
th.addEventListener("click",function(){sort(th)})})}
var D=JSON.parse(document.getElementById("report-data").textContent);
function el(tag,text,cls){var e=document.createElement(tag);if(text!==undefined&&text!==null)e.textContent=String(text);
if(cls)e.className=cls;return e}
function row(cells,head){var tr=el("tr");cells.forEach(function(c){var td=el(head?"th":"td",c[0],c[1]);
if(c[2])td.setAttribute("data-t",c[2]);tr.appendChild(td)});return tr}
function status(c){return c[1]?"drifted":c[3]?"unreachable":(c[2]||!c[0])?"unknown":"in-sync"}
function change(lc){if(!lc)return "last change: none recorded";var r=D.runs[lc[0]];
return "last change: run "+r[0]+" ("+r[3]+"), commit "+r[1]+", "+r[2]+", "+lc[1]+" resource(s)"}
function show(){var m=/^#app=(.*)$/.exec(location.hash),box=document.getElementById("drill");if(!m)return;
var name=decodeURIComponent(m[1]),a=D.apps[name];box.textContent="";
if(!a){box.appendChild(el("p","no application "+name));return}
var sum=[0,0,0,0];a.t.forEach(function(t){for(var k=0;k<4;k++)sum[k]+=t[k+2]});var st=status(sum);
box.appendChild(el("h3",name+": "+st,st));if(a.n)box.appendChild(el("p",a.n,"meta"));
box.appendChild(el("p",change(a.lc)));
box.appendChild(el("p",a.v===undefined?"violations: not verified":"violations: "+a.v.length));
if(a.v&&a.v.length){var ul=el("ul");a.v.forEach(function(v){ul.appendChild(el("li",v))});box.appendChild(ul)}
var tbl=el("table",null,"sortable"),th=el("thead"),tb=el("tbody");
th.appendChild(row([["layer"],["target"],["status",null,"s"],["in sync","n","n"],["drifted","n","n"],
["unknown","n","n"],["unreachable","n","n"]],true));
a.t.forEach(function(t){var s=status(t.slice(2));tb.appendChild(row([[D.layers[t[0]]],[t[1]],[s,s],[t[2],"n"],
[t[3],"n"],[t[4],"n"],[t[5],"n"]]))});
tbl.appendChild(th);tbl.appendChild(tb);box.appendChild(tbl);wire(box);box.scrollIntoView()}
wire(document);window.addEventListener("hashchange",show);show()})();"""

# text columns first, then numbers (right-aligned by the stylesheet: no class on each of 100,000 cells)
_APP_HEAD = (("application", ""), ("status", "s"), ("revision", ""), ("last change", ""), ("commit", ""),
             ("in sync", "n"), ("drifted", "n"), ("unknown", "n"), ("unreachable", "n"), ("targets", "n"),
             ("changes", "n"), ("since converged", "n"), ("violations", "n"))


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = int(seconds)
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    return f"{d}d {h}h" if d else f"{h}h {m}m" if h else f"{m}m {s % 60}s"


def _head(cols: tuple[tuple[str, str], ...]) -> str:
    cells = "".join(f'<th data-t="{t}"{" class=n" if t == "n" else ""}>{_e(c)}' if t else f"<th>{_e(c)}"
                    for c, t in cols)
    return f"<thead><tr>{cells}</thead>"


def _app_row(a: AppCompliance) -> str:
    c, lc, st = a.counts, a.last_change, a.status.value
    since = "Infinity" if a.seconds_since_converged is None else a.seconds_since_converged
    viol = "-" if a.violations is None else len(a.violations)
    name = _e(a.app)
    return (f'<tr><td><a href="#app={name}">{name}</a><td class={st}>{st}<td>{_e(a.revision[:12])}'
            f"<td>{iso(lc.at) if lc else ''}<td>{_e(lc.revision[:12]) if lc else ''}"
            f"<td>{c.in_sync}<td>{c.drifted}<td>{c.unknown}<td>{c.unreachable}<td>{len(a.targets)}<td>{a.changes}"
            f'<td data-v="{since}">{duration(a.seconds_since_converged)}<td>{viol}\n')


def _summary(report: ComplianceReport) -> str:
    by_status = report.apps_by_status()
    totals = report.totals()
    head = "".join(f"<th class=n>{s.value}" for s in STATUSES)
    apps = "".join(f"<td class=n>{by_status[s.value]}" for s in STATUSES)
    res = "".join(f"<td class=n>{totals.get(s)}" for s in STATUSES)
    per_layer: dict[Layer, list[int]] = {}      # layer -> counts, then (app, target) pairs not in sync
    names: dict[Layer, set[str]] = {}
    for a in report.apps:
        for layer, target, c in a.targets:
            acc = per_layer.get(layer)
            if acc is None:
                acc = per_layer[layer] = [0, 0, 0, 0, 0]
                names[layer] = set()
            for i in range(4):
                acc[i] += c[i]
            acc[4] += 1 if (c[1] or c[2] or c[3] or not c[0]) else 0
            names[layer].add(target)
    rows = [f"<tr><td>{layer.value}<td class=n>{len(names[layer])}<td class=n>{per_layer[layer][4]}"
            + "".join(f"<td class=n>{n}" for n in per_layer[layer][:4])
            for layer in Layer.ordered() if layer in per_layer]
    return (f"<table><thead><tr><th>{head}<th class=n>total</thead><tbody>"
            f"<tr><th>applications{apps}<td class=n>{len(report.apps)}"
            f"<tr><th>resources{res}<td class=n>{totals.total}</tbody></table>"
            "<h2>Per layer</h2><table class=sortable>"
            + _head((("layer", ""), ("targets", "n"), ("(app, target) not in sync", "n"))
                    + tuple((s.value, "n") for s in STATUSES))
            + "<tbody>" + "".join(rows) + "</tbody></table>")


def _meta(report: ComplianceReport) -> str:
    v = report.verification
    items = [f"generated {iso(report.generated_at)}", f"source: {report.source}"]
    if report.since is not None:
        items.append(f"changes since {iso(report.since)}")
    if report.applied_revision:
        items.append(f"applied revision {report.applied_revision[:12]}")
    if report.intents_revision:
        items.append(f"observed against intents {report.intents_revision[:12]}")
    items.append(f"reachability: {v.note or ('verified (' + v.source + ')' if v.available else 'not verified')}")
    out = "<p class=meta>" + " · ".join(_e(i) for i in items) + "</p>"
    if report.unobserved:
        out += ("<details><summary>" + _e(f"{len(report.unobserved)} target(s) not observed") + "</summary><ul>"
                + "".join(f"<li>{_e(f'{lay}/{t}: {why}')}" for lay, t, why in report.unobserved) + "</ul></details>")
    return out


def _data(report: ComplianceReport) -> str:
    """The drill-down data, compact (a target is [layer index, name, in sync, drifted, unknown,
    unreachable]; its status follows from its counts; a last change is [index into `runs`,
    resources]; `n` and `v` only when there is a note or a verification), JSON-escaped so that
    it cannot end the script element."""
    lidx = {layer: i for i, layer in enumerate(Layer.ordered())}
    runs: dict[tuple, int] = {}
    apps: dict[str, dict[str, Any]] = {}
    for a in report.apps:
        item: dict[str, Any] = {"t": [[lidx[layer], target, *c] for layer, target, c in a.targets]}
        lc = a.last_change
        if lc is not None:
            run = (lc.run_id, lc.revision, iso(lc.at), lc.trigger)
            item["lc"] = [runs.setdefault(run, len(runs)), lc.resources]
        if a.note:
            item["n"] = a.note
        if a.violations is not None:
            item["v"] = [str(v) for v in a.violations]
        apps[a.app] = item
    text = json.dumps({"layers": [layer.value for layer in Layer.ordered()], "runs": [list(r) for r in runs],
                       "apps": apps}, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_html(report: ComplianceReport) -> str:
    rows = "".join(_app_row(a) for a in report.apps)
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content=\"width=device-width,initial-scale=1\">"
            f"<title>Compliance report</title><style>{_CSS}</style></head><body>\n"
            f"<h1>Compliance report</h1>{_meta(report)}\n<h2>Summary</h2>{_summary(report)}\n"
            "<h2>Drill-down</h2><div id=drill><p class=meta>Choose an application below.</p>"
            "<noscript>The drill-down needs JavaScript; the json and csv formats hold every target.</noscript></div>\n"
            f"<h2>Applications</h2><table id=apps class=sortable>{_head(_APP_HEAD)}<tbody>\n{rows}</tbody></table>\n"
            f'<script type="application/json" id="report-data">{_data(report)}</script>\n'
            f"<script>{_JS}</script>\n</body></html>\n")
