"""RBAC authorization as kube-apiserver's RBAC authorizer decides it, from the
Role, ClusterRole, RoleBinding and ClusterRoleBinding objects Portico ships.

A request is allowed when a rule of a role bound to its user matches every
attribute: the API group, the resource (`plural` or `plural/subresource`), the
verb, the name (`resourceNames`, when the rule has any) and, for a RoleBinding,
the namespace (a ClusterRoleBinding grants everywhere). A ServiceAccount subject
is the user `system:serviceaccount:<namespace>:<name>`; `system:masters` (the
tests' own admin client) may do anything. The denial text is the real one, so a
log shows what a cluster would print.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MASTERS = "system:masters"


@dataclass(frozen=True)
class Request:
    """The authorization attributes of one request."""

    user: str
    verb: str
    group: str
    resource: str  # plural
    subresource: str | None
    namespace: str  # "" for cluster-scoped requests
    name: str | None

    @property
    def resource_path(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


@dataclass(frozen=True)
class Grant:
    """One shipped rule, expanded to one (role, group, resource, verb): what an audit counts."""

    role: str
    group: str
    resource: str
    verb: str


def service_account(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


class Authorizer:
    def __init__(self, objects: Iterable[dict[str, Any]]) -> None:
        objects = list(objects)
        self.roles: dict[tuple[str, str, str], list[dict[str, Any]]] = {}  # (kind, namespace, name) -> rules
        for o in objects:
            if o["kind"] in ("ClusterRole", "Role"):
                ns = o["metadata"].get("namespace", "") if o["kind"] == "Role" else ""
                self.roles[(o["kind"], ns, o["metadata"]["name"])] = list(o.get("rules") or [])
        # (user, namespace the binding grants in, "" = everywhere, role key)
        self.bindings: list[tuple[str, str, tuple[str, str, str]]] = []
        for o in objects:
            if o["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
                continue
            scope = o["metadata"].get("namespace", "") if o["kind"] == "RoleBinding" else ""
            ref = o["roleRef"]
            role = (ref["kind"], scope if ref["kind"] == "Role" else "", ref["name"])
            for s in o.get("subjects") or []:
                user = service_account(s["namespace"], s["name"]) if s["kind"] == "ServiceAccount" else s["name"]
                self.bindings.append((user, scope, role))

    def allows(self, request: Request) -> Grant | None:
        """The rule that allows the request (None: 403)."""
        if request.user == MASTERS:
            return Grant(MASTERS, request.group, request.resource_path, request.verb)
        for user, scope, role in self.bindings:
            if user != request.user or (scope and scope != request.namespace):
                continue
            for rule in self.roles.get(role, []):
                if _matches(rule, request):
                    return Grant(role[2], request.group, request.resource_path, request.verb)
        return None

    def grants(self, user: str) -> set[Grant]:
        """Every (group, resource, verb) the user's roles ship: what an audit compares use with."""
        out = set()
        for u, _, role in self.bindings:
            if u != user:
                continue
            for rule in self.roles.get(role, []):
                for g in rule.get("apiGroups", []):
                    for r in rule.get("resources", []):
                        for v in rule.get("verbs", []):
                            out.add(Grant(role[2], g, r, v))
        return out


def _matches(rule: dict[str, Any], r: Request) -> bool:
    groups, resources, verbs = rule.get("apiGroups", []), rule.get("resources", []), rule.get("verbs", [])
    names = rule.get("resourceNames") or []
    return ((r.group in groups or "*" in groups) and (r.resource_path in resources or "*" in resources)
            and (r.verb in verbs or "*" in verbs) and (not names or r.name in names))


def denial(r: Request) -> str:
    """kube-apiserver's message for a denied request."""
    what = f'{r.resource}.{r.group}' if r.group else r.resource
    named = f' "{r.name}"' if r.name else ""
    group = f'in API group "{r.group}"'
    where = f'in the namespace "{r.namespace}"' if r.namespace else "at the cluster scope"
    return (f'{what}{named} is forbidden: User "{r.user}" cannot {r.verb} resource "{r.resource_path}" '
            f"{group} {where}")
