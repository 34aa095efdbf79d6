"""SecurityPolicy (gateway.portico.dev): who may call a route — JWT authentication and
authorization rules (modelled on Envoy Gateway's SecurityPolicy).

Targets: HTTPRoutes and GRPCRoutes (sectionName: a rule) and Gateways (sectionName: a
listener); a rule's own policy wins over its Gateway's (whole policy, not field by field).

- `jwt`: the request must carry a token (Authorization Bearer, or the headers, cookies
  or query parameters of `extractFrom`) signed by a key of one of the providers, from
  its issuer, for one of its audiences; else 401. `optional`: a request with no token
  passes (one with a bad token does not). Keys: a remote JWKS Envoy fetches through
  `remoteJWKS.backendRefs` (a Service or Backend, resolved like a route's backend), or
  a local JWKS, inline or in a ConfigMap's/Secret's `jwks` key.
- `basicAuth`: users of an htpasswd file (a Secret's ".htpasswd"; "{SHA}" hashes, the
  only kind Envoy checks: others make the policy's ResolvedRefs False); `apiKeyAuth`: the
  keys of Secrets (each data key a client's name, its value the key), read from headers,
  query parameters or cookies (default x-api-key), the client's name forwarded in a
  header. A wrong or missing credential is answered 401; Secrets that cannot be used, 500.
- `oidc`: browser login (Envoy's oauth2 filter: authorization code flow with PKCE). A
  request without a valid session cookie is redirected to the provider's authorization
  endpoint; the callback (the path of `redirectURL`) exchanges the code at the token
  endpoint, through a cluster made from its URL (a local address only where the
  GatewayClass's PorticoProxy spec.localBackends allows it, as for a Backend), and sets
  the session cookies, signed and encrypted with an HMAC secret derived from the client
  secret (stable across restarts and replicas; secret as long as the client secret is).
  Endpoints not given are read from the issuer's discovery document, which the control
  loop fetches (`portico.oidc`): until it has it, or when it cannot, the policy is
  Accepted=False and its routes answer 500 (fail closed). The client secret (a Secret's
  "client-secret" key, Envoy Gateway's) reaches Envoy over SDS only.
- `extAuth`: an authorization service (Envoy's ext_authz over `grpc`, or `http` where a
  2xx answer allows; `headersToExtAuth`, `http.headersToBackend`, `bodyToExtAuth`)
  decides each request, before the route's own ExternalAuth filter; its refusal is
  answered; an unreachable service refuses (403) unless `failOpen`.
- `authorization`: the first rule matching the request (client CIDRs, the verified
  token's claims and scopes, headers, methods, paths, the client certificate the mTLS
  listener verified and its name; every condition of a rule) decides, Allow or Deny,
  else `defaultAction`; a denied request is answered 403.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import urllib.parse
from collections.abc import Iterable
from dataclasses import replace

from portico import ir
from portico.models import (
    OIDC,
    ClientCertificatePrincipal,
    ConfigMap,
    ExtAuth,
    Gateway,
    GatewayClass,
    JWTProvider,
    Resource,
    Secret,
    SecurityPolicy,
)
from portico.objects import ObjectKey
from portico.translator.backends import Backends
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.durations import parse_duration_s
from portico.translator.filters import AUTH_PATH
from portico.translator.gateway import GatewayState, ListenerState
from portico.translator.localaccess import ip_of
from portico.translator.policies.attachment import Ancestors, Attachment
from portico.translator.policies.kind import PolicyKind
from portico.translator.regex import regex_problem
from portico.translator.secrets import configmap_value, secret_value
from portico.translator.snapshot import Discovered

HTPASSWD_KEY = ".htpasswd"  # the key of a basicAuth users Secret (Envoy Gateway's)
HTPASSWD_NGINX_KEY = "auth"  # ingress-nginx's (auth-secret), read when there is no .htpasswd
DEFAULT_API_KEY_HEADER = "x-api-key"
JWKS_KEY = "jwks"  # the key of a localJWKS valueRef's ConfigMap or Secret (Envoy Gateway's)
DEFAULT_JWKS_CACHE_S = 300
# the members of a public key of each type (RFC 7518 section 6, RFC 8037)
KEY_TYPES = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x"), "oct": ("k",)}
CLIENT_SECRET_KEY = "client-secret"  # the key of an oidc clientSecret Secret (Envoy Gateway's)
# Envoy Gateway's default: the callback on the host the request came to
DEFAULT_REDIRECT_URL = "%REQ(x-forwarded-proto)%://%REQ(:authority)%/oauth2/callback"
DEFAULT_LOGOUT_PATH = "/logout"
CERTIFICATE_NAME_TYPES = ("Exact", "Prefix", "Suffix", "RegularExpression")
METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}


class SecurityPolicies(PolicyKind):
    kind = "SecurityPolicy"
    model = SecurityPolicy

    def __init__(self, ctx: Context, attachment: Attachment) -> None:
        super().__init__(ctx, attachment)
        # policies whose keys cannot be had (their routes answer 500): why, for their status
        self.unresolved: dict[ObjectKey, Cond] = {}
        # policies that cannot be programmed for what only the translation knows (an OpenID
        # discovery document missing or refused): Accepted=False with this
        self.rejected: dict[ObjectKey, Cond] = {}
        self.issuers: set[str] = set()  # whose discovery documents the policies need
        self.checked = False
        # policy ("namespace/name") -> Gateway -> listeners where it applies without client
        # certificate validation: its clientCertificate rules never match there
        self.unverified: dict[str, dict[ObjectKey, set[str]]] = {}

    @staticmethod
    def problem(policy: SecurityPolicy) -> str:
        spec = policy.spec
        if not (spec.authorization or spec.jwt or spec.basic_auth or spec.api_key_auth or spec.oidc
                or spec.ext_auth):
            return "the policy sets none of jwt, oidc, basicAuth, apiKeyAuth, extAuth and authorization"
        if spec.oidc is not None:
            why = oidc_problem(spec.oidc)
            if why:
                return f"oidc: {why}"
        why = ext_auth_problem(spec.ext_auth)
        if why:
            return why
        if spec.api_key_auth is not None and not spec.api_key_auth.credential_refs:
            return "apiKeyAuth.credentialRefs is empty"
        providers = [p.name for p in spec.jwt.providers] if spec.jwt else []
        if spec.jwt is not None:
            if not providers:
                return "jwt.providers is empty"
            if len(set(providers)) != len(providers):
                return "jwt.providers names are not unique"
            for p in spec.jwt.providers:
                why = provider_problem(p)
                if why:
                    return f"jwt provider {p.name!r}: {why}"
        for rule in spec.authorization.rules if spec.authorization else []:
            for cidr in rule.principal.client_cidrs:
                try:
                    ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    return f"clientCIDRs {cidr!r} is not a CIDR"
            jwt = rule.principal.jwt
            if jwt is not None and jwt.provider not in providers:
                return f"authorization rule principal.jwt.provider {jwt.provider!r} is not a provider of spec.jwt"
            for m in rule.operation.methods if rule.operation else []:
                if m not in METHODS:
                    return f"operation.methods {m!r} is not an HTTP method"
            why = certificate_problem(rule.principal.client_certificate)
            if why:
                return why
            for path in rule.operation.paths if rule.operation else []:
                if not path or ("*" in path.strip("*")) or path == "*" or not (path.startswith(("/", "*"))):
                    return f"operation.paths {path!r}: an exact path, \"/prefix/*\" or \"*suffix\""
        return ""

    def on_rule(self, action: ir.RouteAction, route: Resource, rule: str | None,
                backends: Backends) -> ir.RouteAction:
        policy = self.attachment.for_rule(self.kind, route.key, rule)
        return self.secure(action, policy, backends, route) if isinstance(policy, SecurityPolicy) else action

    def on_listener(self, action: ir.RouteAction, route: ObjectKey, rule: str | None, listener: ListenerState,
                    backends: Backends) -> ir.RouteAction:
        """The Gateway's (or listener's) policy where the rule has none of its own."""
        policy = self.attachment.for_listener(self.kind, listener.gateway.key, listener.qualified_name)
        if not isinstance(policy, SecurityPolicy) or self.attachment.for_rule(self.kind, route, rule) is not None:
            return action
        return self.secure(action, policy, backends, self.ctx.by_name.get((route.kind, route.namespace, route.name)))

    def secure(self, action: ir.RouteAction, policy: SecurityPolicy, backends: Backends,
               route: Resource | None) -> ir.RouteAction:
        jwt = None
        if policy.spec.jwt is not None:
            providers = tuple(self.provider(policy, p, backends) for p in policy.spec.jwt.providers)
            if any(p is None for p in providers):
                # keys that cannot be had: no token can be verified; fail closed (as ExternalAuth does)
                return replace(action, direct_status=500, jwt=None, authorization=None)
            jwt = ir.JWTAuthentication(tuple(p for p in providers if p is not None), policy.spec.jwt.optional)
        basic = keys = None
        if policy.spec.basic_auth is not None:
            users = self.htpasswd(policy)
            if isinstance(users, Cond):
                return replace(action, direct_status=500, jwt=None, authorization=None)
            basic = ir.BasicAuth(users, policy=policy_name(policy))
        if policy.spec.api_key_auth is not None:
            found = self.api_keys(policy)
            if isinstance(found, Cond):
                return replace(action, direct_status=500, jwt=None, authorization=None)
            keys = found
        oidc = None
        if policy.spec.oidc is not None:
            found_oidc = self.oidc(policy, policy.spec.oidc, backends, route)
            if isinstance(found_oidc, Cond):
                return replace(action, direct_status=500, jwt=None, authorization=None)
            oidc = found_oidc
        ext = None
        if policy.spec.ext_auth is not None:
            ext = ext_auth(policy, backends)
            if ext is None:  # the service cannot be resolved: fail closed (whatever failOpen says)
                return replace(action, direct_status=500, jwt=None, authorization=None)
        return replace(action, jwt=jwt, basic_auth=basic, api_key_auth=keys, oidc=oidc,
                       authorization=authorization(policy), policy_external_auth=ext)

    def endpoints(self, spec: OIDC) -> Discovered | Cond:
        """The provider's endpoints: as given, else from its discovery document."""
        p = spec.provider
        if p.authorization_endpoint and p.token_endpoint:
            return Discovered(p.authorization_endpoint, p.token_endpoint, p.end_session_endpoint or "")
        found = self.ctx.snapshot.discovered.get(p.issuer)
        if found is None:
            return Cond("Accepted", False, "Invalid", f"oidc: the discovery document of {p.issuer} is being "
                                                      "fetched (the policy's routes answer 500 until it is)")
        if found.error:
            return Cond("Accepted", False, "Invalid", f"oidc: discovery of {p.issuer}: {found.error}")
        return Discovered(p.authorization_endpoint or found.authorization_endpoint,
                          p.token_endpoint or found.token_endpoint,
                          p.end_session_endpoint or found.end_session_endpoint)

    def oidc(self, policy: SecurityPolicy, spec: OIDC, backends: Backends, route: Resource | None
             ) -> ir.OIDC | Cond:
        """The IR of the policy's OIDC login, or why it cannot be had (its routes answer 500)."""
        ns, name = policy.metadata.namespace, policy.metadata.name
        ref = spec.client_secret
        secret = self.secret(policy, ref.name, ref.namespace)
        if isinstance(secret, Cond):
            return replace(secret, message=f"oidc.clientSecret: {secret.message}")
        client_secret = secret_value(secret, CLIENT_SECRET_KEY)
        if not client_secret:
            return Cond("ResolvedRefs", False, "InvalidSecret",
                        f"oidc.clientSecret: Secret {ref.name} has no {CLIENT_SECRET_KEY!r} key")
        found = self.endpoints(spec)
        if isinstance(found, Cond):
            return found
        why = url_problem(found.token_endpoint) or url_problem(found.authorization_endpoint)
        if why:
            return Cond("Accepted", False, "Invalid", f"oidc: the provider's endpoints: {why}")
        url = urllib.parse.urlsplit(found.token_endpoint)
        host = url.hostname or ""
        endpoint = ir.Endpoint(host, url.port or (443 if url.scheme == "https" else 80))
        refused = backends.refused(route, "SecurityPolicy", ns, name, (endpoint,)) if route is not None else None
        if refused is not None:
            problem = refused.problem or Cond("ResolvedRefs", False, "RefNotPermitted", "")
            return replace(problem, message=f"oidc token endpoint: {problem.message}")
        tls = ir.UpstreamTLS(sni=host, system_ca=True) if url.scheme == "https" else None
        cluster = backends.add(ir.Cluster(f"oidc/{ns}/{name}/{host}:{endpoint.port}", (endpoint,), "http1",
                                          dns=ip_of(host) is None, tls=tls), (ns, f"oidc:{name}", ""))
        redirect = spec.redirect_url or DEFAULT_REDIRECT_URL
        names = spec.cookie_names
        suffix = hashlib.sha256(f"{ns}/{name}".encode()).hexdigest()[:8]
        ttl = parse_duration_s(spec.default_token_ttl) if spec.default_token_ttl else None
        return ir.OIDC(
            name=f"{ns}/{name}", client_id=spec.client_id, client_secret=client_secret,
            hmac_secret=hmac.new(client_secret.encode(), f"portico oidc hmac {ns}/{name}".encode(),
                                 hashlib.sha256).hexdigest(),
            authorization_endpoint=found.authorization_endpoint, token_endpoint=found.token_endpoint,
            token_cluster=cluster.name, end_session_endpoint=found.end_session_endpoint,
            scopes=tuple(dict.fromkeys(["openid", *spec.scopes])), resources=tuple(spec.resources),
            redirect_uri=redirect, redirect_path=url_path(redirect), logout_path=spec.logout_path or
            DEFAULT_LOGOUT_PATH, forward_access_token=spec.forward_access_token, default_token_ttl_s=ttl,
            refresh_token=spec.refresh_token,
            access_token_cookie=(names.access_token if names else None) or f"AccessToken-{suffix}",
            id_token_cookie=(names.id_token if names else None) or f"IdToken-{suffix}",
            cookie_suffix=suffix, cookie_domain=spec.cookie_domain or "")

    def htpasswd(self, policy: SecurityPolicy) -> str | Cond:
        """The users of basicAuth (their lines, "{SHA}" hashes), or why they cannot be had."""
        assert policy.spec.basic_auth is not None
        ref = policy.spec.basic_auth.users
        secret = self.secret(policy, ref.name, ref.namespace)
        if isinstance(secret, Cond):
            return secret
        text = secret_value(secret, HTPASSWD_KEY) or secret_value(secret, HTPASSWD_NGINX_KEY)
        if not text:
            return Cond("ResolvedRefs", False, "InvalidSecret",
                        f"basicAuth.users: Secret {ref.name} has no {HTPASSWD_KEY!r} (or {HTPASSWD_NGINX_KEY!r}) key")
        why = htpasswd_problem(text)
        if why:
            return Cond("ResolvedRefs", False, "UnsupportedValue", f"basicAuth.users: Secret {ref.name}: {why}")
        return "\n".join(line.strip() for line in text.splitlines() if line.strip()) + "\n"

    def api_keys(self, policy: SecurityPolicy) -> ir.APIKeyAuth | Cond:
        spec = policy.spec.api_key_auth
        assert spec is not None
        credentials: dict[str, str] = {}
        for ref in spec.credential_refs:
            secret = self.secret(policy, ref.name, ref.namespace)
            if isinstance(secret, Cond):
                return secret
            for client in sorted({*secret.data, *secret.string_data}):
                key = secret_value(secret, client)
                if key:
                    credentials[client] = key
        if not credentials:
            return Cond("ResolvedRefs", False, "InvalidSecret", "apiKeyAuth.credentialRefs: no API key in the Secrets")
        keys = [k for k in credentials.values()]
        if len(set(keys)) != len(keys):
            return Cond("ResolvedRefs", False, "InvalidSecret", "apiKeyAuth.credentialRefs: two clients share a key")
        extract = spec.extract_from or []
        headers = tuple(h for e in extract for h in e.headers)
        params = tuple(q for e in extract for q in e.params)
        cookies = tuple(c for e in extract for c in e.cookies)
        return ir.APIKeyAuth(tuple(sorted(credentials.items())), headers or (() if params or cookies else
                                                                             (DEFAULT_API_KEY_HEADER,)),
                             params, cookies, (spec.forward_client_id_header or "").lower(), spec.sanitize,
                             policy=policy_name(policy))

    def secret(self, policy: SecurityPolicy, name: str, namespace: str | None) -> Secret | Cond:
        """A Secret of the policy's namespace (another's only by a ReferenceGrant)."""
        ns = namespace or policy.metadata.namespace
        if ns != policy.metadata.namespace and not self.ctx.reference_allowed(
                "gateway.portico.dev", "SecurityPolicy", policy.metadata.namespace, "", "Secret", ns, name):
            return Cond("ResolvedRefs", False, "RefNotPermitted", f"Secret {ns}/{name}: no ReferenceGrant allows it")
        secret = self.ctx.get(Secret, "Secret", ns, name)
        if secret is None:
            return Cond("ResolvedRefs", False, "InvalidSecret", f"Secret {ns}/{name} not found")
        return secret

    def provider(self, policy: SecurityPolicy, p: JWTProvider, backends: Backends) -> ir.JWTProvider | None:
        """The IR of one provider, or None when its keys cannot be reached."""
        ns = policy.metadata.namespace
        uri = cluster = local = ""
        cache_s = DEFAULT_JWKS_CACHE_S
        if p.remote_jwks is not None:
            if not p.remote_jwks.backend_refs:
                return None
            resolved = backends.resolve(policy, p.remote_jwks.backend_refs[0], "http1")
            if resolved.cluster is None:
                return None
            uri, cluster = p.remote_jwks.uri, resolved.cluster.name
            cache_s = parse_duration_s(p.remote_jwks.cache_duration or "") or DEFAULT_JWKS_CACHE_S
        elif p.local_jwks is not None:
            local = self.local_jwks(ns, p) or ""
            if not local:
                return None
        extract = p.extract_from
        return ir.JWTProvider(
            name=f"{ns}/{policy.metadata.name}/{p.name}", issuer=p.issuer or "", audiences=tuple(p.audiences),
            jwks_uri=uri, jwks_cluster=cluster, jwks_cache_s=cache_s, local_jwks=local,
            claim_to_headers=tuple((c.header, c.claim) for c in p.claim_to_headers),
            from_headers=tuple((h.name, h.value_prefix or "") for h in extract.headers) if extract else (),
            from_cookies=tuple(extract.cookies) if extract else (),
            from_params=tuple(extract.params) if extract else (),
            forward=p.forward_original_token, clock_skew_s=p.clock_skew_seconds)

    def on_gateway(self, gw: GatewayState, listeners: tuple[ir.Listener, ...], backends: Backends
                   ) -> tuple[tuple[ir.Listener, ...], tuple[ir.TLSCertificate, ...]]:
        """Why a policy's keys cannot be had (its routes answer 500), for its status: found
        here, once per translation, not where rules are translated (those may be memoized).
        And, per Gateway, where client-certificate rules cannot match (`unvalidated`)."""
        self.unvalidated(gw)
        if self.checked:
            return listeners, ()
        self.checked = True
        for policy, ancestors in self.attachment.statuses(self.kind):
            assert isinstance(policy, SecurityPolicy)
            for p in policy.spec.jwt.providers if policy.spec.jwt else []:
                where = f"jwt provider {p.name!r}"
                if p.remote_jwks is not None and p.remote_jwks.backend_refs:
                    resolved = backends.resolve(policy, p.remote_jwks.backend_refs[0], "http1")
                    if resolved.cluster is None:
                        why = resolved.problem or Cond("ResolvedRefs", False, "BackendNotFound", "not found")
                        self.unresolved[policy.key] = replace(why, message=f"{where}: remoteJWKS: {why.message}")
                elif p.local_jwks is not None and p.local_jwks.type == "ValueRef" and not self.local_jwks(
                        policy.metadata.namespace, p):
                    self.unresolved[policy.key] = Cond(
                        "ResolvedRefs", False, "InvalidLocalJWKS",
                        f"{where}: localJWKS.valueRef: no valid JWKS under the key {JWKS_KEY!r}")
            if policy.spec.oidc is not None:
                self.check_oidc(policy, policy.spec.oidc, list(ancestors), backends)
            ext = policy.spec.ext_auth
            service = (ext.grpc or ext.http) if ext else None
            if ext is not None and service is not None and service.backend_refs:
                resolved = backends.resolve(policy, service.backend_refs[0], "h2c" if ext.grpc else "http1")
                if resolved.cluster is None:
                    why = resolved.problem or Cond("ResolvedRefs", False, "BackendNotFound", "not found")
                    self.unresolved[policy.key] = replace(why, message=f"extAuth: {why.message}")
            found: list[object] = [self.htpasswd(policy)] if policy.spec.basic_auth else []
            found += [self.api_keys(policy)] if policy.spec.api_key_auth else []
            for problem in found:
                if isinstance(problem, Cond):
                    self.unresolved[policy.key] = problem
        return listeners, ()

    def unvalidated(self, gw: GatewayState) -> None:
        """The listeners of `gw` that validate no client certificate (HTTP, or HTTPS without
        spec.tls.frontend) where a policy with a `principal.clientCertificate` rule applies:
        the listener's own policy (whether routes are served there or not), and the policies
        of the rules served there as translated (their actions: memoized rules included)."""
        for ls in gw.listeners:
            if not ls.ready or ls.protocol not in ("HTTP", "HTTPS") or ls.client_validation is not None:
                continue
            found = set()
            policy = self.attachment.for_listener(self.kind, gw.key, ls.qualified_name)
            if isinstance(policy, SecurityPolicy) and certificate_rules(policy):
                found.add(policy_name(policy))
            for routes in ls.http_routes:
                for entry in routes.entries:
                    auth = entry.route.action.authorization
                    if auth is not None and any(r.client_certificate for r in auth.rules):
                        found.add(auth.policy)
            for name in found:
                self.unverified.setdefault(name, {}).setdefault(gw.key, set()).add(ls.qualified_name)

    def check_oidc(self, policy: SecurityPolicy, spec: OIDC, ancestors: list[ObjectKey], backends: Backends) -> None:
        """The issuer whose discovery document is needed (when its host is one the policy
        may reach: the control loop fetches it), and why the login cannot be had."""
        ns, name = policy.metadata.namespace, policy.metadata.name
        classes = self.classes(ancestors)

        def refused(what: str, url: str) -> bool:
            parts = urllib.parse.urlsplit(url)
            endpoint = ir.Endpoint(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
            why = backends.access.problem(None, "SecurityPolicy", ns, name, (endpoint,), classes=classes)
            why = why or backends.guardrails.problem(None, "SecurityPolicy", ns, name, (endpoint,), classes=classes)
            if why is not None:
                self.rejected[policy.key] = Cond("Accepted", False, "Invalid", f"oidc {what}: {why}")
            return why is not None

        p = spec.provider
        if not (p.authorization_endpoint and p.token_endpoint):
            if refused("issuer", p.issuer):
                return
            self.issuers.add(p.issuer)
        found = self.endpoints(spec)
        if isinstance(found, Cond):
            self.rejected[policy.key] = found
            return
        if url_problem(found.token_endpoint) or url_problem(found.authorization_endpoint):
            self.rejected[policy.key] = Cond("Accepted", False, "Invalid", "oidc: the provider's endpoints: " + (
                url_problem(found.token_endpoint) or url_problem(found.authorization_endpoint)))
            return
        if refused("token endpoint", found.token_endpoint):
            return
        ref = spec.client_secret
        secret = self.secret(policy, ref.name, ref.namespace)
        if isinstance(secret, Cond):
            self.unresolved[policy.key] = replace(secret, message=f"oidc.clientSecret: {secret.message}")
        elif not secret_value(secret, CLIENT_SECRET_KEY):
            self.unresolved[policy.key] = Cond("ResolvedRefs", False, "InvalidSecret",
                                               f"oidc.clientSecret: Secret {ref.name} has no "
                                               f"{CLIENT_SECRET_KEY!r} key")

    def classes(self, ancestors: list[ObjectKey]) -> list[GatewayClass]:
        """The GatewayClasses of ours of the Gateways the policy reaches (its ancestors)."""
        out: dict[str, GatewayClass] = {}
        for key in ancestors:
            if key.kind != "Gateway":
                continue
            gw = self.ctx.get(Gateway, "Gateway", key.namespace, key.name)
            gc = self.ctx.get(GatewayClass, "GatewayClass", "", gw.spec.gateway_class_name) if gw else None
            if gc is not None and gc.spec.controller_name == self.ctx.snapshot.controller_name:
                out[gc.name] = gc
        return [out[n] for n in sorted(out)]

    def statuses(self) -> Iterable[tuple[Resource, Ancestors]]:
        for policy, ancestors in super().statuses():
            rejected = self.rejected.get(policy.key)
            if rejected is not None:
                # (where it is not accepted anyway, Conflicted or Invalid, that says more)
                ancestors = {gw: [rejected if c.type == "Accepted" and c.status else c for c in conds] + (
                    [] if any(c.type == "Accepted" for c in conds) else [rejected])
                    for gw, conds in ancestors.items()}
            why = self.unresolved.get(policy.key)
            if why is not None:
                ancestors = {gw: [why if c.type == "ResolvedRefs" else c for c in conds] + (
                    [] if any(c.type == "ResolvedRefs" for c in conds) else [why]) for gw, conds in ancestors.items()}
            unverified = self.unverified.get(policy_name(policy)) if isinstance(policy, SecurityPolicy) else None
            if unverified and isinstance(policy, SecurityPolicy):
                ancestors = {gw: conds + ([never_matches(policy, unverified[gw])] if gw in unverified and not any(
                    c.type == "Accepted" for c in conds) else []) for gw, conds in ancestors.items()}
            yield policy, ancestors

    def local_jwks(self, ns: str, p: JWTProvider) -> str | None:
        local = p.local_jwks
        assert local is not None
        if local.type != "ValueRef":
            return local.inline
        ref = local.value_ref
        if ref is None:
            return None
        text = None
        if ref.kind == "ConfigMap":
            cm = self.ctx.get(ConfigMap, "ConfigMap", ns, ref.name)
            text = configmap_value(cm, JWKS_KEY) if cm else None
        elif ref.kind == "Secret":
            secret = self.ctx.get(Secret, "Secret", ns, ref.name)
            text = secret_value(secret, JWKS_KEY) if secret else None
        return text if text and not jwks_problem(text) else None


def provider_problem(p: JWTProvider) -> str:
    if (p.remote_jwks is None) == (p.local_jwks is None):
        return "set one of remoteJWKS and localJWKS"
    if p.remote_jwks is not None:
        if not p.remote_jwks.uri.startswith(("http://", "https://")):
            return f"remoteJWKS.uri {p.remote_jwks.uri!r} is not an http(s) URL"
        if not p.remote_jwks.backend_refs:
            return "remoteJWKS.backendRefs: name the Service or Backend that serves the JWKS"
        if p.remote_jwks.cache_duration and not parse_duration_s(p.remote_jwks.cache_duration):
            return f"remoteJWKS.cacheDuration {p.remote_jwks.cache_duration!r} is not a duration"
    if p.local_jwks is not None:
        local = p.local_jwks
        if local.type == "Inline":
            why = jwks_problem(local.inline or "")
            if why:
                return f"localJWKS.inline: {why}"
        if local.type == "ValueRef" and (local.value_ref is None or local.value_ref.kind not in ("ConfigMap",
                                                                                              "Secret")):
            return "localJWKS.valueRef must name a ConfigMap or Secret"
        if local.type not in ("Inline", "ValueRef"):
            return f"localJWKS.type {local.type!r}: Inline or ValueRef"
    if p.clock_skew_seconds is not None and p.clock_skew_seconds < 1:
        return "clockSkewSeconds must be at least 1 (Envoy reads 0 as its default, 60)"
    return ""


def url_problem(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    return ""


def url_path(url: str) -> str:
    """The path of a URL that may hold Envoy format strings (`%REQ(:authority)%`)."""
    rest = url.split("://", 1)[-1]
    path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return path.split("?", 1)[0]


def oidc_problem(spec: OIDC) -> str:
    p = spec.provider
    if url_problem(p.issuer):
        return f"provider.issuer: {url_problem(p.issuer)}"
    for field, value in (("authorizationEndpoint", p.authorization_endpoint), ("tokenEndpoint", p.token_endpoint),
                         ("endSessionEndpoint", p.end_session_endpoint)):
        if value and url_problem(value):
            return f"provider.{field}: {url_problem(value)}"
    if not spec.client_id:
        return "clientID is empty"
    if spec.redirect_url is not None and ("://" not in spec.redirect_url or url_path(spec.redirect_url) == "/"):
        return f"redirectURL {spec.redirect_url!r}: an absolute URL with a callback path (not /)"
    if spec.logout_path is not None and not spec.logout_path.startswith("/"):
        return f"logoutPath {spec.logout_path!r} is not a path"
    if spec.default_token_ttl and not parse_duration_s(spec.default_token_ttl):
        return f"defaultTokenTTL {spec.default_token_ttl!r} is not a duration"
    names = spec.cookie_names
    for cookie in (names.access_token, names.id_token) if names else ():
        if cookie is not None and (not cookie or any(c in cookie for c in " ;,=\"\t")):
            return f"cookieNames: {cookie!r} is not a cookie name"
    return ""


def htpasswd_problem(text: str) -> str:
    """Why Envoy's basic_auth could not take these htpasswd lines ("" if it can): it
    checks "{SHA}" (SHA-1, base64) hashes only; bcrypt, MD5 (apr1) and crypt ones are
    refused here, by name, rather than by Envoy for every route."""
    seen = set()
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            return f"line {n} is not user:hash"
        if user in seen:
            return f"user {user!r} appears twice"
        seen.add(user)
        if not hashed.startswith("{SHA}"):
            kind = ("bcrypt" if hashed.startswith(("$2y$", "$2a$", "$2b$")) else
                    "MD5 (apr1)" if hashed.startswith("$apr1$") else "crypt or plain text")
            return (f"user {user!r}: a {kind} hash; Envoy's basic auth takes SHA-1 ones only "
                    "(htpasswd -s: \"{SHA}...\")")
        try:
            if len(base64.b64decode(hashed[5:], validate=True)) != 20:
                return f"user {user!r}: the {{SHA}} hash is not 20 bytes"
        except binascii.Error:
            return f"user {user!r}: the {{SHA}} hash is not base64"
    return "" if seen else "no users"


def jwks_problem(text: str) -> str:
    """Why Envoy would refuse `text` as a JWKS ("" if it would not): checked here, since
    one provider Envoy refuses would hold back the jwt_authn config of every route."""
    try:
        doc = json.loads(text)
    except ValueError:
        return "not JSON"
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not keys:
        return "no keys"
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in KEY_TYPES:
            return f"a key's kty is not one of {', '.join(KEY_TYPES)}"
        missing = [f for f in KEY_TYPES[key["kty"]] if not isinstance(key.get(f), str) or not key[f]]
        if missing:
            return f"a {key['kty']} key lacks {', '.join(missing)}"
    return ""


def authorization(security: SecurityPolicy) -> ir.ClientAuthorization | None:
    auth = security.spec.authorization
    if auth is None:
        return None
    rules = []
    for r in auth.rules:
        jwt = r.principal.jwt
        op = r.operation
        rules.append(ir.AuthorizationRule(
            allow=r.action == "Allow", name=r.name or "",
            cidrs=tuple(r.principal.client_cidrs),
            methods=tuple(op.methods) if op else (), paths=tuple(op.paths) if op else (),
            headers=tuple((h.name.lower(), tuple(h.values)) for h in r.principal.headers),
            claims=tuple((tuple(c.name.split(".")), tuple(c.values)) for c in jwt.claims) if jwt else (),
            scopes=tuple(jwt.scopes) if jwt else (),
            client_certificate=r.principal.client_certificate is not None,
            certificate_names=tuple((n.type, n.value) for n in r.principal.client_certificate.names)
            if r.principal.client_certificate else (),
            jwt_provider=f"{security.metadata.namespace}/{security.metadata.name}/{jwt.provider}" if jwt else ""))
    return ir.ClientAuthorization(auth.default_action == "Allow", tuple(rules), policy_name(security))


def ext_auth_problem(ext: ExtAuth | None) -> str:
    if ext is None:
        return ""
    if (ext.grpc is None) == (ext.http is None):
        return "extAuth: set one of grpc and http"
    service = ext.grpc or ext.http
    assert service is not None
    if len(service.backend_refs) != 1:
        return "extAuth backendRefs: name the one Service or Backend of the authorization service"
    if ext.grpc is not None and ext.headers_to_ext_auth:
        # Envoy sets the headers of a gRPC check per filter, not per route (every one is sent)
        return "extAuth.headersToExtAuth is not supported with grpc (every request header is sent)"
    if ext.http is not None and ext.http.path and not AUTH_PATH.fullmatch(ext.http.path):
        return f"extAuth.http.path {ext.http.path!r} is not a valid path"
    if ext.body_to_ext_auth is not None and ext.body_to_ext_auth.max_request_bytes < 1:
        return "extAuth.bodyToExtAuth.maxRequestBytes must be at least 1"
    return ""


def ext_auth(policy: SecurityPolicy, backends: Backends) -> ir.ExternalAuth | None:
    """The policy's authorization check (None: its service cannot be resolved)."""
    ext = policy.spec.ext_auth
    assert ext is not None
    service = ext.grpc or ext.http
    assert service is not None
    resolved = backends.resolve(policy, service.backend_refs[0], "h2c" if ext.grpc else "http1")
    if resolved.cluster is None:
        return None
    http = ext.http
    return ir.ExternalAuth(
        protocol="GRPC" if ext.grpc else "HTTP", cluster=resolved.cluster.name,
        path_prefix=http.path.rstrip("/") if http else "", allowed_headers=tuple(ext.headers_to_ext_auth),
        allowed_response_headers=tuple(http.headers_to_backend) if http else (),
        copy_all_response_headers=False,
        forward_body_bytes=ext.body_to_ext_auth.max_request_bytes if ext.body_to_ext_auth else 0,
        fail_open=ext.fail_open, policy=policy_name(policy))


# A condition of a policy's ancestor, Portico's (Envoy Gateway's SecurityPolicy has no
# client-certificate principal): True while some of its authorization rules can never
# match there. The policy is still Accepted and applies; `portico analyze` reports it.
NEVER_MATCH_TYPE = "RulesNeverMatch"
NEVER_MATCH_REASON = "ClientCertificateNotValidated"


def certificate_rules(policy: SecurityPolicy) -> list[str]:
    """The policy's authorization rules with a clientCertificate principal (name, else index)."""
    rules = policy.spec.authorization.rules if policy.spec.authorization else []
    return [r.name or str(i) for i, r in enumerate(rules) if r.principal.client_certificate is not None]


def never_matches(policy: SecurityPolicy, listeners: set[str]) -> Cond:
    """The rules with a clientCertificate principal never match on `listeners`: no client
    certificate is verified there (Envoy's mtls_authenticated principal is never true)."""
    rules, where = certificate_rules(policy), sorted(listeners)
    return Cond(NEVER_MATCH_TYPE, True, NEVER_MATCH_REASON, (
        f"authorization rule{'s' if len(rules) > 1 else ''} {', '.join(rules)} (principal.clientCertificate) "
        f"never match{'' if len(rules) > 1 else 'es'} on listener{'s' if len(where) > 1 else ''} "
        f"{', '.join(where)}: no client certificate is verified there (an HTTPS listener with the Gateway's "
        "spec.tls.frontend validation verifies them)"))


def certificate_problem(cert: ClientCertificatePrincipal | None) -> str:
    for name in cert.names if cert else []:
        if name.type not in CERTIFICATE_NAME_TYPES:
            return f"clientCertificate.names type {name.type!r}: one of {', '.join(CERTIFICATE_NAME_TYPES)}"
        if not name.value:
            return "clientCertificate.names: an empty value"
        why = regex_problem(name.value) if name.type == "RegularExpression" else ""
        if why:
            return f"clientCertificate.names {name.value!r}: {why}"
    return ""


def policy_name(policy: SecurityPolicy) -> str:
    return f"{policy.metadata.namespace}/{policy.metadata.name}"
