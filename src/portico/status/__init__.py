"""Status as both modes publish it.

The translator renders the desired status of every object we own status for
(our entries only; other controllers' entries are carried over untouched). This
package holds what happens between that and a writer: `programmed` holds a
Gateway's or ListenerSet's `Programmed=True` back until its data plane has ACKed
the listeners (ARCHITECTURE, "status"), `transitions` keeps each condition's
lastTransitionTime while its status stays the same, and `ours` keeps other
controllers' entries of shared fields (route parents, policy ancestors). A `StatusWriter`
(`portico.seams`) stores the result: the store and admin API in standalone mode,
the status subresource in Kubernetes mode.
"""

from portico.status.ours import merge_ours, with_ours
from portico.status.programmed import ProgrammedGate, held_back, is_programmed
from portico.status.transitions import stamp_transitions

__all__ = ["ProgrammedGate", "held_back", "is_programmed", "merge_ours", "stamp_transitions", "with_ours"]
