"""A synthetic world and simulated users to test that the feed learns.

``SyntheticWorld`` makes a catalog whose items belong to taxonomy categories (each with a
centroid in vector space, tags and labels like the analyzers produce); ``SimulatedUser``
has hidden, drifting interests over those categories and answers each shown item with
events (impression, a graded view or a skip, sometimes complete and like).
"""

from recommender.simulation.user import SimulatedUser, UserResponse
from recommender.simulation.world import SyntheticItem, SyntheticWorld

__all__ = ["SimulatedUser", "SyntheticItem", "SyntheticWorld", "UserResponse"]
