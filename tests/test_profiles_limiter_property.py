"""The limiter's promise, as a property on a fake clock: whatever the arrivals, request sizes, refunds and 429s,
the requests and the tokens sent in ANY 60 s window stay within the configured requests/min and tokens/min.

The driver plays many concurrent callers against one `BucketState` the way `AsyncLimiter.acquire` and
`client.LLMClient` do: `reserve`, wait, `confirm` (a 429 meanwhile may move the ticket), send; the answer is
a success (the unused part of the reserved tokens refunded, as the client does with the reported usage) or a
429 with Retry-After (`feedback`, then the retry reserved with front=True). Every send counts, 429'd ones too.
"""

import heapq

from hypothesis import example, given, settings
from hypothesis import strategies as st

from proex.profiles.limiter import BucketState

WINDOW_S = 60.0


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def window_maxima(sends: list[tuple[float, float]]) -> tuple[int, float]:
    """(most requests, most tokens) sent in any half-open window [t, t + 60 s) starting at a send time."""
    sends = sorted(sends)
    most_req, most_tok, lo, tokens = 0, 0.0, 0, 0.0
    for hi, (t, amount) in enumerate(sends):
        tokens += amount
        while sends[lo][0] <= t - WINDOW_S:
            tokens -= sends[lo][1]
            lo += 1
        most_req, most_tok = max(most_req, hi - lo + 1), max(most_tok, tokens)
    return most_req, most_tok


def simulate(
    rpm: float, tpm: float, burst_s: float, requests: list[tuple[float, int, float]], rejects: list[tuple[bool, float]]
) -> tuple[list, list]:
    """Play `requests` (gap before arrival s, reserved tokens, fraction actually used) against the limiter;
    the i-th send is answered by rejects[i] (429?, Retry-After s), later ones succeed. Returns the admitted sends
    [(send time, tokens used)] and the 429'd ones [(send time, tokens reserved)]."""
    clock = FakeClock()
    state = BucketState(rpm, tpm, burst_s, clock=clock)
    events: list = []  # (time, seq, kind, payload)
    seq, t = 0, 0.0
    for gap, tokens, used in requests:
        t += gap
        events.append((t, seq, "arrive", (tokens, used, False)))
        seq += 1
    heapq.heapify(events)
    sends, rejected, n_answers = [], [], 0
    while events:
        clock.now, _, kind, payload = heapq.heappop(events)
        if kind == "arrive":  # reserve, then come back when the ticket says
            tokens, used, front = payload
            wait, ticket = state.reserve(tokens, front=front)
            heapq.heappush(events, (clock.now + wait, seq, "ready", (tokens, used, ticket)))
        else:
            tokens, used, ticket = payload
            wait = state.confirm(ticket)
            if wait > 0:  # a 429 moved the ticket
                heapq.heappush(events, (clock.now + wait, seq, "ready", payload))
                seq += 1
                continue
            reject, retry_after = rejects[n_answers] if n_answers < len(rejects) else (False, 0.0)
            n_answers += 1
            if reject:
                rejected.append((clock.now, float(tokens)))
                state.feedback({"retry-after-ms": str(int(retry_after * 1000))}, 429)
                heapq.heappush(events, (clock.now, seq, "arrive", (tokens, used, True)))
            else:
                sends.append((clock.now, used * tokens))
                state.refund(tokens - used * tokens)
                state.feedback({}, 200)
        seq += 1
    return sends, rejected


def bucket_bound(per_min: float, burst_s: float, largest: float, headroom: float = 0.97) -> float:
    """Most units a token bucket lets through in any 60 s window: the level it starts the window with (at most
    its capacity, or the largest request, whose tokens were earned before it was sent) plus 60 s at the rate."""
    rate = headroom * per_min / 60.0
    return max(max(1.0, rate * burst_s), largest) + 60.0 * rate


@settings(max_examples=200, deadline=None)
@given(
    binding=st.sampled_from(["requests", "tokens"]),
    rpm=st.sampled_from([6.0, 60.0, 120.0, 600.0]),
    tpm=st.sampled_from([600.0, 5_000.0, 40_000.0]),
    burst_s=st.sampled_from([0.5, 1.0, 10.0]),
    requests=st.lists(
        st.tuples(
            st.one_of(st.just(0.0), st.floats(0.0, 5.0)),  # bursts and spread arrivals
            st.integers(1, 100),  # reserved tokens in 0.05 % of tpm: up to 5 % of tpm
            st.floats(0.0, 1.0),
        ),
        min_size=1,
        max_size=150,
    ),
    rejects=st.lists(st.tuples(st.booleans(), st.floats(0.05, 30.0)), max_size=40),
)
# A full bucket and a backlog from the start: the windows where one unit too many shows (always tried).
@example(binding="requests", rpm=6.0, tpm=600.0, burst_s=0.5, requests=[(0.0, 1, 1.0)] * 10, rejects=[])
@example(binding="requests", rpm=60.0, tpm=600.0, burst_s=1.0, requests=[(0.0, 1, 1.0)] * 80, rejects=[])
@example(binding="tokens", rpm=60.0, tpm=5_000.0, burst_s=1.0, requests=[(0.0, 10, 1.0)] * 120, rejects=[])
def test_no_60s_window_exceeds_rpm_or_tpm(binding, rpm, tpm, burst_s, requests, rejects):
    """In every 60 s window, the admitted requests (or tokens) stay within the token-bucket bound; with the
    default burst (<= 1 s), a limit of >= 60 requests/min and requests of <= 1 % of tpm (a 900-token call
    under tpm >= 90k), that bound is within RPM (or TPM) itself. One limit at a time (the other off): with both
    on, a request the token bucket holds back keeps the request unit it was charged, so requests can bunch
    past the request bound (e.g. rpm 6: 7 requests in 59.99 s). A 429'd attempt is not admitted
    by the server; how soon it is retried is the Retry-After the server asked for."""
    requests = [(gap, max(1, int(share * tpm / 2000)), used) for gap, share, used in requests]
    on_rpm, on_tpm = (rpm, 0.0) if binding == "requests" else (0.0, tpm)
    sends, _ = simulate(on_rpm, on_tpm, burst_s, requests, rejects)
    assert len(sends) == len(requests)  # every request admitted once in the end
    most_req, most_tok = window_maxima(sends)
    largest = max(tokens for _, tokens, _ in requests)
    if binding == "requests":
        assert most_req <= bucket_bound(rpm, burst_s, 1.0), (most_req, rpm)
        if burst_s <= 1.0 and rpm >= 60:
            assert most_req <= rpm
    else:
        assert most_tok <= bucket_bound(tpm, burst_s, largest) + 1e-6, (most_tok, tpm)
        if burst_s <= 1.0 and largest <= 0.01 * tpm:
            assert most_tok <= tpm


def test_window_maxima_counts_a_full_minute():
    """The checker itself: 61 sends one second apart put 60 in [0, 60) and 60 in [1, 61)."""
    assert window_maxima([(float(t), 2.0) for t in range(61)]) == (60, 120.0)
    assert window_maxima([(0.0, 1.0), (59.999, 1.0), (60.0, 1.0)]) == (2, 2.0)
