"""The tracking store: opening one, writing to it when it fails, and what it holds about runs."""
