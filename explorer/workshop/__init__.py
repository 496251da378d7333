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
lessons    lesson files (TOML/JSON): steps with a page and its checked settings, questions (Lesson, parse_lesson)
truths     a question's truth, computed at reveal time (method code, memory model, the room's shared runs)
answers    what an answer may be; the projector's tallies and histograms
room       the room's lesson state in SQLite: start, moves, heartbeats, answers, reveals (Room, default_room)
sqlite_store   the shared-SQLite plumbing the room is built on (the class board's pattern)
takehome   the take-home and the handout: one self-contained HTML file plus its JSON
joining    the join address (PEFT_EXPLORER_PUBLIC_URL or the server's) and its QR code
follow     what a participant's page does when the room moves (follow, back_to_lesson, banner)
"""
