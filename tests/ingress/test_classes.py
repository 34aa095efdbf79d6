"""Which Ingresses are Portico's, in ingress-nginx's order (`GetIngressClass`), and the
default IngressClass as Kubernetes' DefaultIngressClass admission applies it."""

from __future__ import annotations

from typing import Any

from portico.ingress import ours
from portico.ingress.convert import default_class

DEFAULT = {"ingressclass.kubernetes.io/is-default-class": "true"}


def cls(name: str, controller: str = "portico.dev/ingress-controller", default: bool = False) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": name, **({"annotations": DEFAULT} if default else {})},
            "spec": {"controller": controller}}


def ing(class_name: str | None = None, annotation: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "i", "namespace": "n"}
    if annotation:
        meta["annotations"] = {"kubernetes.io/ingress.class": annotation}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
            "spec": {"ingressClassName": class_name} if class_name else {}}


def test_ingress_class_name_first_and_it_must_name_an_ingress_class_of_ours() -> None:
    classes = [cls("edge"), cls("nginx", "k8s.io/ingress-nginx")]
    assert ours(ing("edge"), classes)
    assert not ours(ing("nginx", annotation="edge"), classes)  # ingressClassName wins over the annotation
    assert not ours(ing("portico"), classes)  # no such IngressClass: ingress-nginx ignores it too


def test_the_annotation_names_a_class_of_ours_or_portico() -> None:
    classes = [cls("edge"), cls("nginx", "k8s.io/ingress-nginx")]
    assert ours(ing(annotation="edge"), classes)
    assert ours(ing(annotation="portico"), classes)
    assert not ours(ing(annotation="nginx"), classes)


def test_without_a_class_only_when_ours_is_the_one_default() -> None:
    assert ours(ing(), [cls("edge", default=True)])
    assert not ours(ing(), [cls("edge")])
    assert not ours(ing(), [cls("edge"), cls("nginx", "k8s.io/ingress-nginx", default=True)])
    # two defaults: the admission refuses a class-less Ingress, so it has none
    assert not ours(ing(), [cls("edge", default=True), cls("nginx", "k8s.io/ingress-nginx", default=True)])
    assert default_class([cls("edge", default=True)]) == "edge"
