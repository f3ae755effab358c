"""What the commands run: a config built into a job (``build``), training it (``training``), and
what every command promises on bad input (``console``)."""
