"""The training engine: configuration, the loop, adapter export."""
