"""The admin API (``/admin/v1``): tenants, keys, subscriptions, approval rules.

Built on Litestar, which reads and writes msgspec Structs, validates every
request against them and publishes the OpenAPI document; the chat path stays
bare ASGI (see ``ingress/app.py``).
"""
