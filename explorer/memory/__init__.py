"""Memory: the analytic model, the byte account, model specs."""
