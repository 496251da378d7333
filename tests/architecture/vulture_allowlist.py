"""Names vulture cannot see used (tests/architecture/test_dead_code.py reads this file as code that uses them).

Each is read by a library, called by its name in a string, or read as a dataclass field through ``fields()`` /
``asdict()``.  Keep it short: a name that is really unused is removed, not listed here.
"""

# pyproject.toml's console script (peft-explorer = "explorer.__main__:console")
_.console
# transformers reads these from the config / model the project sets them on (engine/prepare.py, model_files.py)
_.id2label; _.label2id; _.hf_quantizer
# run summaries: written by RunSummary.to_dict(), which walks dataclasses.fields() (engine/records.py, train.py)
_.best_accuracy; _.wall_time_s; _.peak_memory_bytes; _.peak_memory_train_bytes; _.peak_cuda_bytes
_.peak_rss_bytes; _.mean_step_time_s; _.final_loss
# the janitor's counters: the debug status panel shows asdict(stats) (workshop/sessions.py, status.py)
_.sweeps; _.removed; _.last_sweep; _.last_error
# run in a worker by name, "package.module:function" (workshop/inspector.py, worker_side.py)
_.warmup_in_worker; _.selftest
# worker_side._RemoteState builds its object in __new__
_.__new__
# transformers reads a config's attention implementation (engine/speed.py sets it on a standalone layer's config)
_._attn_implementation
# a protobuf field the headless participant sets on Streamlit's rerun message (tools/st_protocol.py)
_.is_auto_rerun
