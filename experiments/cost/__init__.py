"""Cost table of Zhu et al. (2023): wall time of training and inference, single + GMM vs
ensembles."""
