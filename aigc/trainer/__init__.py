"""What aigc adds to Lightning's Trainer: ``precision=auto`` (``precision``), the DDP strategy
(``distributed``), atomic checkpoint files (``checkpoint_io``), and every private attribute of
Lightning that aigc reads (``internals``)."""
