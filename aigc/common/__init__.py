"""What every layer of aigc may use, and which imports nothing else of aigc: the tag names
(``tags``), what models and data can do (``capabilities``: contracts and traits), the ranges of
constructor arguments (``constraints``), one-line error text (``errors``), reading what runs
stored as untrusted input (``stored``) and pretrained files from the Hugging Face hub (``hub``)."""
