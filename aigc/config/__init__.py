"""Composed configs: checked before any run exists (``validation``) and the ``${aigc.*:}``
resolvers they use (``resolvers``, registered when ``aigc`` is imported)."""
