"""Serving a room: the run queue, sessions, history, security, the class board, presets."""
