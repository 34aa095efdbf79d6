"""Status as both modes publish it.

The translator renders the desired status of every object we own status for (our
entries only). This package holds what happens between that and the place it is
stored: `programmed` holds a Gateway's or ListenerSet's `Programmed=True` back until
its data plane has ACKed the listeners (ARCHITECTURE, "status"); `compose` merges our
entries with what is stored (other controllers' entries of route parents and policy
ancestors kept in place) and stamps lastTransitionTime (`transitions`), once, for
every writer. A `StatusWriter` (`portico.seams`) stores the result: the store
(`status.store`, standalone mode), or the status subresource (`status.kubernetes`).
"""

from portico.status.compose import SHARED_FIELDS, compose, without_ours
from portico.status.programmed import ProgrammedGate, held_back, is_programmed
from portico.status.transitions import stamp_transitions

__all__ = ["SHARED_FIELDS", "ProgrammedGate", "compose", "held_back", "is_programmed", "stamp_transitions",
           "without_ours"]
