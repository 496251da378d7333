"""The claims lab: each paper's headline claim reproduced at small scale, with seeds, error bars and a verdict
computed by a stated rule (pure Python, no Streamlit).

- :mod:`.specs`     the experiments, defined in code (model, task, arms with methods and knobs, steps, seeds)
- :mod:`.stats`     means, 95 % t-intervals, slopes, the verdict rules
- :mod:`.analysis`  per-seed records -> per-arm summaries and verdicts
- :mod:`.runner`    runs an experiment with the training API (the only module that imports it), writes JSON
- :mod:`.results`   the shipped results under ``assets/claims/``
- :mod:`.cli`       ``python -m explorer claims``
"""
