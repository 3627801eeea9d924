"""Fig. 4 of Zhu et al. (2023): uncertainty and energy landscapes on the β dihedral scans."""
