"""The embedded synthetic surgical-like corpus (draw, render, marks, script, corpus) and benchmark suite."""
