"""The one tiny model of the test suite: f = 4, lmax = 1, two interaction layers, four Bessel
functions, a one-layer radial MLP of width 8, r_max = 4 Å, and the 3BPA species (H, C, N, O).
Small enough that compiling it dominates a test's cost; every path of the network is present."""

SPECIES = (1, 6, 7, 8)
R_MAX = 4.0
TINY_MODEL = {
    "num_features": 4,
    "lmax": 1,
    "num_layers": 2,
    "r_max": R_MAX,
    "num_basis": 4,
    "radial_mlp_depth": 1,
    "radial_mlp_width": 8,
}
