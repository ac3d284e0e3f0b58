"""What the detectors found in a text, remembered per distinct text: in a
conversation every earlier turn comes back in each request, and scanning a
dense 4 KB turn costs about a millisecond (phone numbers parsed by
libphonenumber are most of it), so each distinct message is scanned once.

An entry is keyed by the tenant, the rules it was found under (their
encoding, not their version number: a config file may change rules without
raising it) and a digest of the text, never the text itself: what the memo
holds after a request is spans, not the caller's values. Entries are
bounded in number and in the findings they hold, the least recently used
forgotten first, so a caller sending ever new texts only cycles the memo.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

import msgspec

from schemas.control import PrivacyRules
from services.detectors.base import Finding

# Below this a text scans in about the time hashing it takes.
MIN_TEXT = 256
_rules_bytes = msgspec.msgpack.Encoder()


class ScanMemo:
    def __init__(self, max_entries: int = 8192, max_findings: int = 200_000) -> None:
        self._max_entries, self._max_findings = max_entries, max_findings
        self._kept: OrderedDict[bytes, list[Finding]] = OrderedDict()
        self._findings = 0
        self.hits = self.misses = 0

    def finder(
        self, tenant_id: str, rules: PrivacyRules, find: Callable[[str, PrivacyRules], list[Finding]]
    ) -> Callable[[str], list[Finding]]:
        """``find(text, rules)``, remembered for this tenant and these rules."""
        scope = hashlib.blake2b(tenant_id.encode() + b"\0" + _rules_bytes.encode(rules), digest_size=16).digest()

        def memoised(text: str) -> list[Finding]:
            if len(text) < MIN_TEXT:
                return find(text, rules)
            key = scope + hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            found = self._kept.get(key)
            if found is not None:
                self._kept.move_to_end(key)
                self.hits += 1
                return found
            self.misses += 1
            found = find(text, rules)
            self._keep(key, found)
            return found

        return memoised

    def _keep(self, key: bytes, found: list[Finding]) -> None:
        if len(found) > self._max_findings // 4:
            return  # one hostile text must not empty the memo of everyone else's
        self._kept[key] = found
        self._findings += len(found)
        while len(self._kept) > self._max_entries or self._findings > self._max_findings:
            _, old = self._kept.popitem(last=False)
            self._findings -= len(old)

    def __len__(self) -> int:
        return len(self._kept)
