"""The Lightning callbacks cnnlab adds to a run, one module per job: checkpointing,
diagnostics (TensorBoard figures), the weights' moving average (ema), early stopping."""
