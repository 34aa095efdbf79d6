"""Infrastructure: where each Gateway's data plane runs and how it is reached.

The translator never sees this package. An `Infrastructure` (see
`portico.seams`) places Gateways (addresses, bind ports), runs their Envoys and
maps data-plane failures (a socket Envoy cannot bind) back to neutral inputs of
the next translation. `host` is standalone mode's: loopback addresses and Envoy
processes on this machine.
"""
