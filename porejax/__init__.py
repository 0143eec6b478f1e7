"""porejax: learn, generate and characterise 3D multi-phase porous microstructures with JAX.

g = porejax.load_generator(checkpoint_dir)   # frozen generator + PhaseMap
z = g.latent(seed=0, size=g.latent_size_for(64))  # (A, A, A, latent_channels) for a 64^3 volume
p = g.probabilities(z)                       # (64, 64, 64, n_phases) float32
v = g.labels(z)                              # label volume with the original label values
"""

from porejax.errors import PorejaxError
from porejax.generate import FrozenGenerator, load_generator
from porejax.latents import interpolate_latents
from porejax.models import ModelConfig
from porejax.volume import PhaseMap, decode, one_hot, read_volume, write_volume

__version__ = "0.1.0"

__all__ = [
    "FrozenGenerator",
    "ModelConfig",
    "PhaseMap",
    "PorejaxError",
    "decode",
    "interpolate_latents",
    "load_generator",
    "one_hot",
    "read_volume",
    "write_volume",
]
