"""The training engine, one concern per module: ``config`` (TrainConfig), ``prepare`` (device, model and task,
head, optimizer groups, schedule), ``step`` (the one training step every caller uses), ``records`` (typed step
records and the run summary), ``state`` (RunState, RunResult, the running-runs registry), ``train`` (the loop),
``warmup`` (a method's warm-up on its own) and ``export`` (save and reload a run)."""
