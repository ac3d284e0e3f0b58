"""Provider adapters: one package per upstream API family, behind the
``ChatAdapter`` and ``EmbeddingsAdapter`` protocols; ``registry`` names them."""
