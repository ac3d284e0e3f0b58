"""Re-costing: the cost of stored requests recomputed from the current
catalog, written as ``cost_corrections`` rows (the ``requests`` rows stay as
recorded). The rollups follow through their views on that table.

It is relative to what each request costs now (its latest correction, else
its row), so a second run with the same prices changes nothing, and a run
cut short is finished by running it again.
"""

from __future__ import annotations

import time

from analytics.store import Store
from schemas.analytics import RecostRequest, RecostResult, RecostTenant
from schemas.ids import new_id
from services import pricing
from services.config import Config
from services.model_config import model_groups


def _price(kind: str) -> str:
    """A row's per-token price of one kind, from the arrays the query is given."""
    return f"transform(r.deployment, {{deployments:Array(String)}}, {{{kind}:Array(UInt64)}}, toUInt64(0))"


# Prices come in as arrays by deployment (the row's deployment names its
# catalog model); the arithmetic is the gateway's own (services.pricing.cost):
# uncached input and cache writes, cached input, output, in integer pico-USD.
_RECOSTED = """
SELECT r.request_id, r.ts, r.tenant_id, r.key_id, r.model, r.deployment, r.provider, r.status,
       if(c.request_id = '', r.cost_pico_usd, c.corrected) AS old_cost,
       greatest(toInt64(r.prompt_tokens) - r.cached_tokens - r.cache_write_tokens, 0) * PRICE(input)
       + r.cache_write_tokens * PRICE(cache_write)
       + r.cached_tokens * PRICE(cached_input)
       + r.completion_tokens * PRICE(output) AS new_cost
FROM (
    SELECT * FROM requests FINAL
    WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
      AND ts < fromUnixTimestamp64Nano(toInt64({until_ns:UInt64}))
      AND deployment IN {deployments:Array(String)}
      AND NOT cache_hit
      AND api != 'mcp'
      -- Priced per unit (images, audio, characters, searches): the row does not keep what
      -- the price depended on (an image's size and quality), so it is left as recorded.
      AND unit = ''
      AND ({model:String} = '' OR model = {model:String})
      AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
) AS r
LEFT JOIN (
    SELECT request_id, argMax(new_cost_pico_usd, corrected_at) AS corrected
    FROM cost_corrections FINAL
    WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
      AND ts < fromUnixTimestamp64Nano(toInt64({until_ns:UInt64}))
    GROUP BY request_id
) AS c ON r.request_id = c.request_id
WHERE new_cost != old_cost
"""

for _kind in ("input", "cache_write", "cached_input", "output"):
    _RECOSTED = _RECOSTED.replace(f"PRICE({_kind})", _price(_kind))

_UNPRICED = """
SELECT count() FROM requests FINAL
WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
  AND ts < fromUnixTimestamp64Nano(toInt64({until_ns:UInt64}))
  AND deployment NOT IN {deployments:Array(String)}
  AND NOT cache_hit AND prompt_tokens + completion_tokens > 0
  AND ({model:String} = '' OR model = {model:String})
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
"""

_BY_TENANT = """
SELECT tenant_id, count() AS requests, toString(sum(old_cost)) AS old_cost, toString(sum(new_cost)) AS new_cost
FROM ({rows}) GROUP BY tenant_id ORDER BY tenant_id
"""


def prices(config: Config) -> dict[str, pricing.Price]:
    """Each configured deployment's price under the catalog as its file says now."""
    catalog = pricing.read_catalog(pricing.catalog_path())
    out = {}
    for route in model_groups(config.models).values():
        for dep in route.deployments:
            entry = catalog.get(dep.catalog_model or "")
            if entry is not None:
                out[dep.name] = pricing.price_of(entry)
    return out


def recost(store: Store, config: Config, ask: RecostRequest) -> RecostResult:
    by_deployment = prices(config)
    names = sorted(by_deployment)
    params = {
        "since_ns": max(0, ask.since_ns),
        "until_ns": min(2**63 - 1, ask.until_ns),
        "model": ask.model,
        "tenant_id": ask.tenant_id,
        "deployments": names,
        "input": [by_deployment[n].input for n in names],
        "cached_input": [by_deployment[n].cached_input for n in names],
        "cache_write": [by_deployment[n].cache_write for n in names],
        "output": [by_deployment[n].output for n in names],
    }
    _, unpriced = store.query(_UNPRICED, params)
    recost_id = "" if ask.dry_run else new_id()
    if not ask.dry_run:
        store.command(
            "INSERT INTO cost_corrections (request_id, ts, tenant_id, key_id, model, deployment, provider, status, "
            "old_cost_pico_usd, new_cost_pico_usd, corrected_at, recost_id) "
            f"SELECT *, fromUnixTimestamp64Nano(toInt64({time.time_ns()})), {{recost_id:String}} FROM ({_RECOSTED})",
            {**params, "recost_id": recost_id},
        )
        rows = "SELECT tenant_id, old_cost_pico_usd AS old_cost, new_cost_pico_usd AS new_cost FROM cost_corrections "
        rows += "FINAL WHERE recost_id = {recost_id:String}"
        _, found = store.query(_BY_TENANT.format(rows=rows), {"recost_id": recost_id})
    else:
        _, found = store.query(_BY_TENANT.format(rows=_RECOSTED), params)
    tenants = [RecostTenant(t, int(n), int(old), int(new)) for t, n, old, new in found]
    return RecostResult(recost_id=recost_id, tenants=tenants, unpriced=int(unpriced[0][0]))
