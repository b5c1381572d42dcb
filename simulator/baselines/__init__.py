"""Baselines of the paper's Table 1, run in-process: FedAvg, FedCompress, DP-FedAvg (Keras teacher), FedKD."""
