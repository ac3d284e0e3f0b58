"""The provider stage's generic HTTP adapter for REST services (api "rest").

One module a job: ``target`` (where a call goes, hostile paths refused),
``headers`` (what goes upstream and what comes back), ``client`` (the
process's aiohttp session), ``call`` (one try: the answer streamed back,
caps, which failures another instance may retry), ``health`` (each
instance's health check, for the routing replicas' breakers).
"""
