"""Which of the mock's shapes for images, audio, moderation and rerank
answers a path. Each shape module reads its own body (JSON or multipart)
and answers through the app's ``_send``, after the app counted the request
(``Stats.requests``, ``repeated``, ``/mock/requests``) as it counts a chat's."""

from __future__ import annotations

from types import ModuleType

from loadtest.mock_upstream import audio_shape, images_shape, moderation_shape, rerank_shape

SHAPES: tuple[ModuleType, ...] = (images_shape, audio_shape, moderation_shape, rerank_shape)


def shape_for(path: str) -> ModuleType | None:
    """The shape module that answers ``path`` (after any "/@<name>" prefix), if any."""
    for shape in SHAPES:
        if shape.handles(path):
            return shape
    return None
