"""Portico: the Kubernetes Gateway API on Envoy, with a Python control plane."""

CONTROLLER_NAME = "portico.dev/gateway-controller"
__version__ = "0.1.0"
