"""porejax: learn, generate and characterise 3D multi-phase porous microstructures with JAX."""

from porejax.errors import PorejaxError
from porejax.volume import PhaseMap, decode, one_hot, read_volume, write_volume

__version__ = "0.1.0"

__all__ = ["PhaseMap", "PorejaxError", "decode", "one_hot", "read_volume", "write_volume"]
