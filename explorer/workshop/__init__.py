"""Serving a room (pure Python, no streamlit).

jobs       the server's run queue (concurrency limit, FIFO, memory check) and sweep budgets (sweep_plan)
runs       a session's fine-tune through the queue (FineTuneRun, start_fine_tune)
sweeps     several fine-tunes in a row (Sweep, SweepResult, SweepSnapshot)
inspector  the SMT block inspector's warm-up job, block budget and hand-off to Fine-tune (SmtHandoff)
sessions   session ids, folders, who holds them, and the janitor that removes ended sessions' folders
history    a session's runs (RunEntry, RunHistory), export and import
security   safe paths, upload checks, atomic writes
board, board_fields   the class board and what its entries may hold
status     the server status panel (PEFT_EXPLORER_DEBUG=1)
presets, tryout   lesson presets, "Try your model" (the upload limit: explorer.limits)
"""
