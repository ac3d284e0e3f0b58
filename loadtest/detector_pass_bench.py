"""Masking's "all patterns in one pass", measured before building it: on
the dense turns of ``make bench``'s masking load (``masking_load.turn``),
the time of each built-in detector's candidate search alone (its regular
expression, no checks), their sum, the same expressions as one alternation
(one pass over the text), and the whole scan (``privacy.findings``:
search, checks, settling), µs per 820-character turn.

RE2's set matching (google-re2 is installed) cannot run these expressions:
they lean on look-behind and look-ahead, which RE2 does not have.

    python -m loadtest.detector_pass_bench
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from loadtest.masking_load import turn
from loadtest.privacy_bench import RULES
from services import privacy
from services.detectors import cards, email, iban, ip, phone, secrets, ssn

SEARCHES: dict[str, re.Pattern[str]] = {
    "card": cards._CANDIDATE,
    "iban": iban._CANDIDATE,
    "ipv4": ip._V4,
    "ipv6": ip._V6,
    "phone": phone._CANDIDATE,
    "email": email._EMAIL,
    "ssn": ssn._SSN,
    "secret (JWT)": secrets._JWT,
    "secret (PEM)": secrets._PEM,
}
TEXTS = [turn(c, 4) for c in range(300)]


def us_per_text(fn: Callable[[str], object]) -> float:
    start = time.perf_counter()
    for text in TEXTS:
        fn(text)
    return (time.perf_counter() - start) / len(TEXTS) * 1e6


def main() -> None:
    total = 0.0
    for name, pattern in SEARCHES.items():
        us = us_per_text(lambda t, p=pattern: list(p.finditer(t)))
        total += us
        print(f"  {name:14} {us:6.1f} µs")
    one = re.compile("|".join(f"(?:{p.pattern})" for p in SEARCHES.values()))
    print(f"  sum of the searches      {total:6.1f} µs")
    print(f"  one alternation, one pass {us_per_text(lambda t: list(one.finditer(t))):6.1f} µs")
    print(f"  the whole scan            {us_per_text(lambda t: privacy.findings(t, RULES)):6.1f} µs")


if __name__ == "__main__":
    main()
