"""`portico convert --report`: a migration report a team can paste into a ticket.

Per Ingress, each ingress-nginx annotation with its outcome (converted, converted with
a difference and what differs, not converted and why) and what else of the Ingress is
not converted; then a summary counting the outcomes and listing, annotation by
annotation, what needs a decision. Markdown: tables read as text and render in trackers.
"""

from __future__ import annotations

from collections import Counter

from portico.ingress import nginx
from portico.ingress.convert import Conversion

OUTCOMES = (nginx.CONVERTED, nginx.DIFFERENT, nginx.NOT_CONVERTED)


def render(conversion: Conversion, provider: str = "ingress-nginx") -> str:
    lines = [f"# Migration report: {provider} Ingress -> Gateway API (Portico)", ""]
    for report in conversion.reports:
        lines += [f"## Ingress {report.ingress}", ""]
        if report.annotations:
            lines += ["| annotation | outcome | detail |", "|---|---|---|"]
            lines += [f"| `{a}` | {o} | {_cell(d)} |" for a, o, d in report.annotations]
        else:
            lines.append("No ingress-nginx annotations.")
        if report.notes:
            lines += ["", "Also not converted as it is:"] + [f"- {_cell(n)}" for n in report.notes]
        lines.append("")
    lines += _summary(conversion)
    return "\n".join(lines) + "\n"


def _summary(conversion: Conversion) -> list[str]:
    counts = Counter(o for r in conversion.reports for _, o, _ in r.annotations)
    total = sum(counts.values())
    lines = ["## Summary", "",
             f"{len(conversion.reports)} Ingress(es), {total} annotation(s): "
             + ", ".join(f"{counts[o]} {o}" for o in OUTCOMES) + "."]
    for outcome, heading in ((nginx.NOT_CONVERTED, "Not converted (decide what replaces them)"),
                             (nginx.DIFFERENT, "Converted with a difference (check they are acceptable)")):
        found = [(r.ingress, a, d) for r in conversion.reports for a, o, d in r.annotations if o == outcome]
        if found:
            lines += ["", f"{heading}:"] + [f"- [ ] {ing}: `{a}`: {d}" for ing, a, d in found]
    notes = [(r.ingress, n) for r in conversion.reports for n in r.notes]
    if notes:
        lines += ["", "Other parts not converted as they are:"] + [f"- [ ] {ing}: {n}" for ing, n in notes]
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
