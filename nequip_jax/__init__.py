"""nequip-jax: NequIP interatomic potentials in JAX with fast Gaussian-mixture uncertainty.

Zhu, Batzner, Musaelian, Kozinsky, J. Chem. Phys. 158, 164111 (2023).
"""

from nequip_jax._cache import enable_compilation_cache
from nequip_jax.model import NequIP, NequIPConfig, Potential, load

__all__ = ["NequIP", "NequIPConfig", "Potential", "enable_compilation_cache", "load"]
__version__ = "0.1.0"
