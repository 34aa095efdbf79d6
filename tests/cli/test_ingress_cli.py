"""What a new user of Ingress sees: `portico status` lists Ingresses with their address,
`portico describe ingress/NAME` says where it is served and how each annotation is,
and the admin API lists the cluster-scoped IngressClass without a namespace."""

from __future__ import annotations

from pathlib import Path

from portico.cli.status import KINDS, rows
from portico.describe import describe, find
from portico.standalone import offline

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ingress"
ME = "portico.dev/gateway-controller"


def test_status_lists_the_ingress_with_its_address() -> None:
    objects = offline([str(EXAMPLE)]).objects()
    ingress_rows = [r for r in rows([o for o in objects if o["kind"] in KINDS]) if r[0] == "Ingress"]
    assert len(ingress_rows) == 1
    kind, name, where, _ = ingress_rows[0]
    assert name == "shop/api" and where.startswith("class portico: 127."), where


def test_describe_an_ingress_says_where_and_how_its_annotations_are_served() -> None:
    objects = offline([str(EXAMPLE)]).objects()
    ingress = find(objects, "ingress", "api", "shop")
    assert ingress is not None
    text = "\n".join(describe(ingress, objects, ME))
    assert "no status" not in text
    assert "class portico: 127." in text
    assert "nginx.ingress.kubernetes.io/rewrite-target: converted" in text
    assert ("nginx.ingress.kubernetes.io/configuration-snippet: converted with a difference (never run: its "
            "header directives are converted to header modifiers)") in text
    # 503 over the limit, as ingress-nginx's limit-req-status-code: no difference left
    assert "  nginx.ingress.kubernetes.io/limit-rps: converted" in text.splitlines()


def test_the_ingress_class_is_cluster_scoped() -> None:
    objects = offline([str(EXAMPLE)]).objects()
    (cls,) = [o for o in objects if o["kind"] == "IngressClass"]
    assert "namespace" not in cls["metadata"] or not cls["metadata"]["namespace"], cls["metadata"]
    assert find(objects, "ingressclass", "portico", None) is cls
