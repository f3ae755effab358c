"""A run (or a sweep's parent run) while it trains: what it logs and records, how it resumes and ends."""
