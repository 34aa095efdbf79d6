"""The old way: Ingress objects, served and converted to the Gateway API.

`convert` turns Ingress objects (with ingress-nginx's annotations, `nginx`) into
GatewayClass/Gateway/HTTPRoute objects and Portico policies; `serve` runs the same
conversion over the Ingress objects of Portico's IngressClass, so an Ingress is
served by the translator that serves routes.
"""

from portico.ingress.convert import Conversion, Report, comment, convert, ingress_class
from portico.ingress.serve import INGRESS_CONTROLLER, Served, ours, serve

__all__ = ["INGRESS_CONTROLLER", "Conversion", "Report", "Served", "comment", "convert", "ingress_class",
           "ours", "serve"]
