"""Tasks and data files: bundled tasks, user files, encodings."""
