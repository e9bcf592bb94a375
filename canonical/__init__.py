"""The canonical engagement model: pure data and rules, no I/O, imports nothing of ours."""
