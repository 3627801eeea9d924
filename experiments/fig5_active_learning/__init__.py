"""Fig. 5 and Table I of Zhu et al. (2023): one round of uncertainty-driven active learning."""
