"""Gateway API features Portico claims in GatewayClass status.supportedFeatures:
only those the conformance kit passes (tests/conformance/passing.txt)."""

SUPPORTED_FEATURES: list[str] = [
    "Gateway",
    "HTTPRoute",
    "ListenerSet",
    "ReferenceGrant",
]
