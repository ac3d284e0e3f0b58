"""The admin API (``/admin/v1``): tenants, keys, subscriptions, approval rules.

Built on Litestar, which reads and writes msgspec Structs (the API's shapes,
``schemas/admin.py``, which the command line builds too), validates every
request against them and publishes the OpenAPI document; the chat path stays
bare ASGI (see ``ingress/app.py``).
"""
