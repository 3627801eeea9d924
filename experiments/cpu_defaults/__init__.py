"""A/B of the ``cpu`` model's defaults: this library's SiLU model against the paper-era one."""
