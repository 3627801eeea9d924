"""Fig. 2 of Zhu et al. (2023): per-atom uncertainty against per-atom force error."""
