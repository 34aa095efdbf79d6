"""IR -> Envoy v3 resources (`build`) and the ADS server that serves them (`XdsServer`)."""

from portico.xds.resources import Resources, build, resource_version

__all__ = ["Resources", "build", "resource_version"]
