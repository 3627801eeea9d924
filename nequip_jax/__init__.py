"""nequip-jax: NequIP interatomic potentials in JAX with fast Gaussian-mixture uncertainty."""

__version__ = "0.1.0"
