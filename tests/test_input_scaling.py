"""Every parser on a request's path is linear: doubling each generated complexity input at most x2.5 its CPU time.

The inputs and the parsers are testkit/scaling.py's (``python -m bench.scaling`` prints the
table). CPU time, the least of five runs, at sizes where each costs milliseconds; a case
over the ratio is measured again (twice at most) before it fails: the machine is shared,
and a cache evicted by a neighbour is no growth of ours. Before: 16 ``A``, n line breaks
and ``!`` took x4 per doubling in the base64 test.
"""

from __future__ import annotations

import pytest

from testkit.scaling import CASES, MAX_RATIO, measure

pytestmark = pytest.mark.slow  # about 20 s


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_doubling_the_input_at_most_follows_it(case):
    results = []
    for _ in range(3):  # bounded: a first pass and two retries
        result = measure(case)
        results.append(result)
        if result.ok:
            break
    assert result.ok, (f"{case.name}: x{result.ratio:.2f} for twice the input (limit x{MAX_RATIO}); "
                       + ", ".join(f"{r.small * 1000:.1f} -> {r.large * 1000:.1f} ms" for r in results))
