"""Data plane processes (Envoy) run by Portico in standalone mode."""
