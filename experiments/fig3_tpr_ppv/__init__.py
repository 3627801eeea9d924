"""Fig. 3 of Zhu et al. (2023): TPR, PPV and TPR×PPV maps of the three uncertainty methods."""
