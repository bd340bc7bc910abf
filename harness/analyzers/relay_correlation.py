"""Who sends to whom through a relay: match relay-inbound message bursts (device -> relay) to relay-outbound
ones (relay -> device) by delay, size and envelope id, learned from the capture alone; never all pairs.

The adversary knows nothing of the simulator. From the bursts it learns, by EM over a histogram of
inbound -> outbound time differences (log-spaced bins), how long the relay holds a message: background
pairs (unrelated messages) spread uniformly in delay, true pairs pile up where the relay's delay is.
The same EM learns the size-difference distribution of true pairs (the relay's overhead: 0 when it
re-seals the same plaintext, a constant for a fixed header, nothing when bodies are padded) and how
often envelope ids agree (a relay that forwards its inbound id). The background is uniform in delay only
where a message's whole window lies inside the capture: near its ends the background follows each delay
bin's coverage (`delay_coverage`). A pair is possible only if the recipient's connection was already open
when the message came in: a relay pushes down connections it holds, and a reply on a connection opened
afterwards is a client's own new session (every web or mail server would look like a relay otherwise).
A delay found so is believed only if it clearly beats the same EM run with outbound times shifted past
WINDOW (no true pair can fall there), the null's excess scaled by the real sample's exposure over the
null's; a capture shorter than the shift leaves the null nothing, and an excess with nothing to compare
against is not believed. Per outbound message j the candidates i inside the learned delay support get a
likelihood ratio

    L_ij = lambda_t(delay) * lambda_s(size difference) * lambda_id(ids equal?)

against background, and the posterior p_ij = L_ij / (1 + sum_i L_ij) (the 1 is "no inbound in the
window is j's": cover traffic, a missed leg). Each inbound leaves the relay once (exclusivity: one
balancing pass scales an inbound's total posterior mass down to at most 1), which is how the relay's
order enters. A link sender -> recipient collects O = sum of p over the recipient's outbound messages
(for a batching mix this is the statistical disclosure attack: every round the true sender sits in the
batch, others only by chance). Its null expectation mu0 comes from the same pass over outbound times
shifted far outside the delay support (what unrelated traffic collects), four times, by whole periods
for a recipient whose stream is periodic (cover slots): mu0 = max(n_r * A0(s), the pair's own null). A link is
emitted when O >= MIN_MASS and its Poisson tail p-value P(X >= O | mu0) passes Benjamini-Hochberg at
FDR_Q = 0.05 over all tested pairs: the expected share of false links among those emitted is at most
5% under the null (the scorer measures the real precision: shaped traffic can strain the null
model). Its confidence is 1 - p-value.

Complexity, for n inbound and m outbound bursts: one sort, O((n+m) log(n+m)); EM on a sample of at
most SAMPLE outbounds (fewer when busy: about SAMPLE_PAIRS pairs) against inbounds within WINDOW
seconds, O(min(SAMPLE * rho * WINDOW, SAMPLE_PAIRS)) pairs per iteration (rho = inbound rate), at most
six times (two modes, each against up to two shifted nulls; the pairs of each placement drawn once); the
full pass enumerates per outbound only the inbounds inside the learned support [lo, hi] with
searchsorted, O(m * rho * (hi - lo)) pairs, four times more for the null shifts; links aggregate by
sorting integer pair keys, O(P log P). Memory O(P). No step is O(n * m).
"""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

from harness.analyzers import register
from harness.analyzers.interface import Analyzer, Finding
from harness.observe import views
from harness.observe.model import CLIENT, Flow
from harness.observe.name_codes import NameCodes

ID = "metadata.relay-correlation"
INBOUND, OUTBOUND = 0, 1  # device -> relay, relay -> device

WINDOW = 60.0  # seconds of delay the EM looks at
D_MIN = 1e-3  # smallest delay bin edge
BINS = 240  # log-spaced delay bins over [D_MIN, WINDOW]
SAMPLE = 20000  # outbound messages the EM learns from, at most
SAMPLE_PAIRS = 2_000_000  # and at most about this many (inbound, outbound) pairs in their windows
EM_ITERS = 12
SCAN_WIDTHS = (5, 15, 45)  # neighbouring delay bins the significance scan sums, at three scales
SIZE_MIN_PAIRS = 5  # pairs a size difference needs before it can count as the relay's overhead
SIZE_MATCH_RATIO = 3.0  # a size difference this over-represented against the null marks size-matched pairs
SCAN_MIN_PAIRS = 3  # pairs a scan window needs before it can be significant
SCAN_ALPHA = 0.01  # family-wise error of the scan over all bins
SUPPORT_LAMBDA = 0.02  # delay bins whose signal/background ratio is at least this form the support
MIN_SIGNAL = 3.0  # messages' worth of excess before a delay support is believed at all
MIN_MASS = 0.5  # a link needs at least half a message's worth of attributed evidence
FDR_Q = 0.05  # Benjamini-Hochberg false discovery rate for emitted links
SIZE_PSEUDO = 1.0  # pseudo-count shrinking the true-pair size model toward background
FLUSH_GAP = 0.05  # seconds: outbound messages closer than this leave the relay in one flush
BATCHED_SHARE = 0.5  # a relay batches when at least this share of outbound messages leave in flushes of 2+
SDA_MIN_ROUNDS = 5  # rounds before disclosure is attempted
NULL_SHIFTS = (1, -1, 2, -2)  # null passes: multiples of the base shift (or of a periodic stream's period)
PERIODIC_SPREAD = 0.05  # a stream whose gaps stay within 5% of their median is periodic (slots)
NULL_OFFSET = 7.31  # seconds past WINDOW the null shifts outbound times (no true pair can fall inside)
CANDIDATE_MIN = 0.01  # per-message candidates below this posterior are left out of findings


@dataclass
class Bursts:
    """Message bursts at one relay as arrays: what the correlation core works on (a benchmark can build
    them directly). device: small integer codes; direction: INBOUND or OUTBOUND; ident: envelope ids
    (-1 unknown)."""

    time: np.ndarray
    device: np.ndarray
    direction: np.ndarray
    size: np.ndarray
    ident: np.ndarray | None = None
    opened: np.ndarray | None = None  # when the burst's connection was first seen (None: not known)

    def __post_init__(self) -> None:
        self.time = np.asarray(self.time, dtype=np.float64)
        self.device = np.asarray(self.device, dtype=np.int64)
        self.direction = np.asarray(self.direction, dtype=np.int8)
        self.size = np.asarray(self.size, dtype=np.int64)
        self.ident = (np.full(len(self.time), -1, dtype=np.int64) if self.ident is None
                      else np.asarray(self.ident, dtype=np.int64))
        if self.opened is not None:
            self.opened = np.asarray(self.opened, dtype=np.float64)


@dataclass
class DelayModel:
    """What the EM learned: delay likelihood ratio per bin, size-difference ratios, id agreement ratios."""

    edges: np.ndarray
    lam_t: np.ndarray
    size_values: np.ndarray  # sorted distinct size differences seen in the sample
    lam_s: np.ndarray
    lam_s_unseen: float
    lam_id: tuple[float, float]  # (ids equal, ids differ)
    support: tuple[float, float] | None  # [lo, hi] seconds, None: no relay delay found
    signal: float  # messages' worth of excess pairs in the sample
    sample: int  # outbound messages in the sample
    null_signal: float = 0.0  # the same EM's excess with outbound times shifted beyond WINDOW (scaled: _survives_null)
    mode: str = "delay"  # "size": the delay was found among size-matched pairs; "delay": among all
    exposure: float = 0.0  # the sample's windows' overlap with the inbound stream's span (PairSample)

    def ratio(self, delay: np.ndarray, dsize: np.ndarray, same_id: np.ndarray) -> np.ndarray:
        k = np.clip(delay_bins(self.edges, delay), 0, len(self.lam_t) - 1)
        lam = self.lam_t[k].copy()
        if len(self.size_values):
            j = np.clip(value_positions(self.size_values, dsize), 0, len(self.size_values) - 1)
            seen = self.size_values[j] == dsize
            lam *= np.where(seen, self.lam_s[j], self.lam_s_unseen)
        else:
            lam *= self.lam_s_unseen
        lam *= np.where(same_id, self.lam_id[0], self.lam_id[1])
        return lam


@dataclass
class Link:
    sender: int  # device code
    recipient: int
    mass: float  # O: messages' worth of posterior attributed to the pair
    null: float  # mu0: what unrelated traffic would collect
    pvalue: float
    linked_at: float | None  # time of the outbound message at which the link first passed the threshold
    messages: int  # outbound messages with this sender as the most likely one


@dataclass
class Correlation:
    model: DelayModel
    out_index: np.ndarray  # indices (into the Bursts arrays) of outbound messages
    pair_out: np.ndarray  # per candidate pair: position in out_index
    pair_in: np.ndarray  # per candidate pair: index into the Bursts arrays of the inbound
    posterior: np.ndarray
    none: np.ndarray  # per outbound message: probability that no candidate is its source
    links: list[Link] = field(default_factory=list)
    pvalue_cutoff: float = 0.0


def _pairs(t_in: np.ndarray, t_out: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """(outbound position, inbound position) for every inbound with lo <= t_out - t_in <= hi; t_in sorted."""
    a = np.searchsorted(t_in, t_out - hi, side="left")
    b = np.searchsorted(t_in, t_out - lo, side="right")
    counts = np.maximum(b - a, 0)
    total = int(counts.sum())
    out_pos = np.repeat(np.arange(len(t_out)), counts)
    first = np.cumsum(counts) - counts
    in_pos = np.arange(total) - np.repeat(first, counts) + np.repeat(a, counts)
    return out_pos, in_pos


def _smooth(x: np.ndarray) -> np.ndarray:
    kernel = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    return np.convolve(x, kernel, mode="same")


def _scan(hist: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Bins inside a window (of any of SCAN_WIDTHS bins) whose count is significantly above expected."""
    covered = np.zeros(len(hist), bool)
    tests = len(hist) * len(SCAN_WIDTHS)
    for width in SCAN_WIDTHS:
        kernel = np.ones(width)
        seen, exp = np.convolve(hist, kernel, "same"), np.convolve(expected, kernel, "same")
        hot = (seen >= SCAN_MIN_PAIRS) & (seen > exp)
        if hot.any():
            hot[hot] = poisson_tail(seen[hot], exp[hot]) < SCAN_ALPHA / tests
        for c in np.nonzero(hot)[0].tolist():
            covered[max(c - width // 2, 0):c + width // 2 + 1] = True
    return covered


def delay_bins(edges: np.ndarray, delay: np.ndarray) -> np.ndarray:
    """`np.searchsorted(edges, delay, side="right") - 1` for edges [0, geomspace(...)], exactly, in a few
    vector operations: a log estimate of the bin, then corrected by comparing with the edges themselves
    (the estimate is off by at most one bin from rounding; two correction rounds make it exact, and the
    result is checked against the edges, so it never depends on the estimate being good)."""
    last = len(edges) - 1
    if len(delay) == 0:
        return np.zeros(0, np.int64)
    step = math.log(edges[2] / edges[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        est = np.floor(np.log(np.maximum(delay, edges[1] * 1e-6) / edges[1]) / step) + 1
    k = np.clip(np.nan_to_num(est, nan=0.0), 0, last).astype(np.int64)
    for _ in range(2):
        k = k - ((k > 0) & (edges[k] > delay))  # too high: step down
        k = k + ((k < last) & (edges[np.minimum(k + 1, last)] <= delay))  # too low: step up
    bad = ((k > 0) & (edges[k] > delay)) | ((k < last) & (edges[np.minimum(k + 1, last)] <= delay))
    bad |= ~np.isfinite(delay) | (delay < edges[0])
    if bad.any():  # negative or odd values, or an estimate off by more than two: searchsorted decides
        k[bad] = np.searchsorted(edges, delay[bad], side="right") - 1
    return k


def value_positions(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """`np.searchsorted(values, keys)` for sorted unique integer `values` and integer `keys`, through a
    lookup table over the values' range (searchsorted costs a binary search per key; a million keys
    per model here). Falls back to searchsorted for a range too wide to tabulate."""
    if len(values) == 0 or len(keys) == 0:
        return np.searchsorted(values, keys)
    lo, hi = int(values[0]), int(values[-1])
    if hi - lo > 1 << 22 or not (np.issubdtype(values.dtype, np.integer) and np.issubdtype(keys.dtype, np.integer)):
        return np.searchsorted(values, keys)
    table = np.searchsorted(values, np.arange(lo, hi + 1, dtype=values.dtype))
    inside = (keys >= lo) & (keys <= hi)
    out = np.where(keys < lo, 0, len(values))
    out[inside] = table[keys[inside] - lo]
    return out


def unique_integers(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(keys, return_inverse=True)` for integer keys, by counting over their range instead of
    sorting (a million size differences per model here); sorts when the range is too wide to count."""
    if len(keys) == 0:
        return np.unique(keys, return_inverse=True)
    lo, hi = int(keys.min()), int(keys.max())
    if hi - lo > max(4 * len(keys), 1 << 16):
        return np.unique(keys, return_inverse=True)
    offset = keys - lo
    present = np.bincount(offset, minlength=hi - lo + 1) > 0
    rank = np.cumsum(present) - 1
    return np.flatnonzero(present).astype(keys.dtype) + lo, rank[offset]


@dataclass
class PairSample:
    """The (inbound, outbound) pairs a relay could have made (`_possible`) within WINDOW s for a sample of
    outbound messages, and what every mode's EM reads from them: delay bins, size differences, the size null.
    Made once per placement of the outbound times (real, or shifted for a null) and shared by the modes."""

    edges: np.ndarray
    sample: int  # outbound messages in the sample
    op: np.ndarray  # per pair: position of its outbound message in the sample
    k: np.ndarray  # per pair: delay bin
    same_id: np.ndarray
    values: np.ndarray  # distinct size differences
    vinv: np.ndarray  # per pair: its size difference's position in `values`
    hist: np.ndarray  # pairs per delay bin
    size_ratio: np.ndarray  # per size difference: real count against the null's (scaled), smoothed
    matched_value: np.ndarray  # size differences significantly over-represented: the relay's overhead
    null_matched: float  # the null's (scaled) pairs with a matched size difference
    exposure: float  # sum over the sample of how much of its window [t - WINDOW, t] the inbound stream spans,
    # in windows: what a shifted null loses at the capture's ends (a capture shorter than the shift: all)
    coverage: np.ndarray | None  # per delay bin: outbound-seconds of it inside the inbound stream's span
    # (delays an outbound message near the capture's ends cannot have); None: every window inside


def pair_sample(b: Bursts, inb: np.ndarray, outb: np.ndarray, seed: int = 0) -> PairSample:
    """The pairs `learn_delay_model` learns from (a sample of at most SAMPLE outbound messages, fewer when
    busy: about SAMPLE_PAIRS pairs), drawn with `seed`."""
    edges = np.concatenate([[0.0], np.geomspace(D_MIN, WINDOW, BINS)])
    rng = np.random.default_rng(seed)
    span_t = float(b.time[inb[-1]] - b.time[inb[0]]) if len(inb) > 1 else 1.0
    per_outbound = max(len(inb) / max(span_t, 1.0) * WINDOW, 1.0)  # inbound candidates in one window
    want = int(min(SAMPLE, max(SAMPLE_PAIRS / per_outbound, 1000)))
    sample = outb if len(outb) <= want else np.sort(rng.choice(outb, want, replace=False))
    t_in = b.time[inb]
    op, ip = _pairs(t_in, b.time[sample], 0.0, WINDOW)
    o, i = sample[op], inb[ip]
    keep = _possible(b, o, i) & (b.time[o] > b.time[i])
    op, o, i = op[keep], o[keep], i[keep]
    delay = b.time[o] - b.time[i]
    dsize = b.size[o] - b.size[i]
    same_id = (b.ident[o] == b.ident[i]) & (b.ident[o] >= 0)
    k = np.clip(delay_bins(edges, delay), 0, BINS - 1)
    hist = np.bincount(k, minlength=BINS).astype(float)
    values, vinv = unique_integers(dsize)
    # Size differences over-represented against the same pairs' null (outbound times shifted past
    # WINDOW: same sizes, no true pair): the relay's overhead, if sizes survive it.
    # The null's counts are scaled to the real pairs' number: a shifted stream overlaps the capture less
    # (in a capture shorter than the shift, not at all), and raw counts would make every common size
    # difference look over-represented. With no null pairs there is no null: no size is "matched".
    count = np.bincount(vinv, minlength=len(values)).astype(float)
    null_count = np.zeros(len(values))
    null_pairs = 0
    for sign in (1.0, -1.0):
        nop, nip = _pairs(t_in, b.time[sample] + sign * (WINDOW + NULL_OFFSET), 0.0, WINDOW)
        no, ni = sample[nop], inb[nip]
        nd = (b.size[no] - b.size[ni])[_possible(b, no, ni, sign * (WINDOW + NULL_OFFSET))]
        null_pairs += len(nd)
        j = np.clip(value_positions(values, nd), 0, max(len(values) - 1, 0))
        if len(values):
            np.add.at(null_count, j[values[j] == nd], 1.0)
    null_count *= len(dsize) / null_pairs if null_pairs else 0.0
    size_ratio = (count + 1.0) / (null_count + 1.0)
    matched_value = (size_ratio >= SIZE_MATCH_RATIO) & (count >= SIZE_MIN_PAIRS) & (null_pairs > 0)
    if matched_value.any():
        matched_value[matched_value] = (poisson_tail(count[matched_value], null_count[matched_value] + 0.5)
                                        < SCAN_ALPHA / max(len(values), 1))
    coverage = delay_coverage(edges, b.time[sample], t_in)
    exposure = float(len(sample)) if coverage is None else float(coverage.sum()) / WINDOW
    return PairSample(edges, len(sample), op, k, same_id, values, vinv, hist, size_ratio, matched_value,
                      float(null_count[matched_value].sum()), exposure, coverage)


def delay_coverage(edges: np.ndarray, t_out: np.ndarray, t_in: np.ndarray) -> np.ndarray | None:
    """Per delay bin, how many seconds of it the outbound messages `t_out` could have pairs in: delay d is
    possible for a message at t only while t - d lies inside the inbound stream's span [first, last]. None
    when every message's whole window is (the background is then uniform: s * widths).

    Near the capture's ends a window is cut: early messages cannot have long delays, messages past the last
    inbound cannot have short ones. A background taken uniform there shows an excess that no relay made
    (at short delays in the real capture, at long ones in a shifted null); the EM measures against this
    coverage instead. Exact interval sums over sorted interval ends, O((s + bins) log s)."""
    if not len(t_in):
        return np.zeros(len(edges) - 1)
    first, last = float(t_in[0]), float(t_in[-1])
    lo = np.clip(t_out - last, edges[0], edges[-1])  # each message's possible delays: [lo, hi]
    hi = np.clip(t_out - first, edges[0], edges[-1])
    if not len(t_out) or (lo.max() <= edges[0] and hi.min() >= edges[-1]):
        return None
    hi = np.maximum(hi, lo)

    def integral(ends: np.ndarray) -> np.ndarray:
        """At every edge x: sum over messages of max(0, x - end)."""
        ends = np.sort(ends)
        n = np.searchsorted(ends, edges, side="right")
        below = np.concatenate([[0.0], np.cumsum(ends)])[n]
        return n * edges - below

    inside = integral(lo) - integral(hi)  # at each edge x: total length of [lo, hi] below x
    return np.maximum(np.diff(inside), 0.0)


def learn_delay_model(b: Bursts, inb: np.ndarray, outb: np.ndarray, seed: int = 0,
                      mode: str | None = None) -> DelayModel:
    """EM over (inbound, outbound) pairs within WINDOW s for a sample of outbound messages. mode "size":
    the delay is sought among size-matched pairs (sizes survive the relay), "delay": among all pairs;
    None: "size" when some size difference is significantly over-represented."""
    return fit_delay_model(pair_sample(b, inb, outb, seed), mode)


def fit_delay_model(pairs: PairSample, mode: str | None = None) -> DelayModel:
    """`learn_delay_model` on pairs already drawn."""
    edges, op, k, same_id = pairs.edges, pairs.op, pairs.k, pairs.same_id
    values, vinv, hist, size_ratio, matched_value = (pairs.values, pairs.vinv, pairs.hist, pairs.size_ratio,
                                                     pairs.matched_value)
    widths = np.diff(edges)
    s = max(pairs.sample, 1)
    span = WINDOW - edges[0]
    if pairs.coverage is not None:  # windows cut at the capture's ends: the background follows the coverage
        if pairs.coverage.sum() <= 0:
            return DelayModel(edges, np.zeros(BINS), values, size_ratio, 1.0, (1.0, 1.0), None, 0.0,
                              pairs.sample, mode=mode or "delay", exposure=0.0)
        widths, span = pairs.coverage / s, float(pairs.coverage.sum()) / s
    # Where is the excess over a uniform background significant? A multi-scale scan over neighbouring
    # bins, Poisson tail against Bonferroni over bins and scales; the EM only models delays in that
    # hull. First over all pairs, then (sizes survive, delays spread) over the size-matched pairs.
    rate = hist.sum() / (s * span) if hist.sum() else 1.0
    matched = matched_value[vinv] if len(vinv) else np.zeros(0, bool)
    # Size-matched pairs (sizes survive the relay): their delays against what the null's size-matched
    # pairs would give, spread uniformly; all pairs: against a uniform background.
    hist_m = np.bincount(k[matched], minlength=BINS).astype(float) if matched.any() else np.zeros(BINS)
    null_m = pairs.null_matched + 1.0
    covered = np.zeros(BINS, bool)
    if mode in (None, "size") and matched.any():
        covered = _scan(hist_m, null_m / (s * span) * widths)
        mode = "size" if covered.any() or mode == "size" else None
    if mode in (None, "delay"):
        mode = "delay"
        covered = _scan(hist, rate * s * widths)
    if not covered.any():
        return DelayModel(edges, np.zeros(BINS), values, size_ratio, 1.0, (1.0, 1.0), None, 0.0, pairs.sample,
                          mode=mode, exposure=pairs.exposure)
    hot = np.nonzero(covered)[0]
    inside = (np.arange(BINS) >= hot[0]) & (np.arange(BINS) <= hot[-1])
    if mode == "size":
        lam_t = np.where(inside, _smooth(hist_m) / np.maximum(rate * s * widths, 1e-12), 0.0)
    else:
        lam_t = np.where(inside, np.maximum(_smooth(hist) - rate * s * widths, 0.0)
                         / np.maximum(rate * s * widths, 1e-12), 0.0)
    lam_s, lam_s_unseen, lam_id = size_ratio.copy(), 1.0, (1.0, 1.0)
    post = np.zeros(len(k))
    ids_agree = bool(same_id.any())  # if never, lam_id stays (1, 1): multiplying by it changes nothing
    for _ in range(EM_ITERS):
        # E: posterior of each candidate being the outbound's source (or none).
        lam = lam_t[k] * lam_s[vinv] if len(k) else np.zeros(0)
        if ids_agree:
            lam = lam * np.where(same_id, lam_id[0], lam_id[1])
        denom = 1.0 + np.bincount(op, weights=lam, minlength=s)
        post = lam / denom[op] if len(k) else lam
        # M: delay signal histogram vs uniform background.
        g = _smooth(np.bincount(k, weights=post, minlength=BINS))
        background = max(hist.sum() - post.sum(), 1.0)
        rate = background / (s * span)
        lam_t = np.where(inside, g / np.maximum(rate * s * widths, 1e-12), 0.0)
        # Size differences of true pairs vs background pairs, shrunk toward background.
        sig = np.bincount(vinv, weights=post, minlength=len(values))
        bg = np.bincount(vinv, weights=1.0 - post, minlength=len(values))
        p_bg = (bg + 0.5) / (bg.sum() + 0.5 * len(values))
        p_sig = (sig + SIZE_PSEUDO * p_bg) / (sig.sum() + SIZE_PSEUDO)
        lam_s = p_sig / p_bg
        lam_s_unseen = SIZE_PSEUDO / (sig.sum() + SIZE_PSEUDO)
        # Envelope ids: how often they agree in true vs background pairs (Laplace-smoothed).
        if ids_agree:
            se = (post[same_id].sum() + 0.5) / (post.sum() + 1.0)
            be = ((1.0 - post)[same_id].sum() + 0.5) / ((1.0 - post).sum() + 1.0)
            lam_id = (se / be, (1.0 - se) / (1.0 - be))
    signal = float(post.sum())
    support = None
    strong = np.nonzero(lam_t >= SUPPORT_LAMBDA)[0]
    if signal >= MIN_SIGNAL and len(strong):
        support = (float(edges[strong[0]]), float(edges[strong[-1] + 1]))
        lam_t = np.where((np.arange(BINS) >= strong[0]) & (np.arange(BINS) <= strong[-1]), lam_t, 0.0)
    return DelayModel(edges, lam_t, values, lam_s, float(lam_s_unseen), lam_id, support, signal, pairs.sample,
                      mode=mode, exposure=pairs.exposure)


def _posteriors(b: Bursts, model: DelayModel, inb: np.ndarray, outb: np.ndarray, t_out: np.ndarray):
    lo, hi = model.support
    op, ip = _pairs(b.time[inb], t_out, lo, hi)
    o, i = outb[op], inb[ip]
    delay = t_out[op] - b.time[i]
    keep = _possible(b, o, i, t_out[op] - b.time[o]) & (delay > 0)
    op, o, i, delay = op[keep], o[keep], i[keep], delay[keep]
    lam = model.ratio(delay, b.size[o] - b.size[i], (b.ident[o] == b.ident[i]) & (b.ident[o] >= 0))
    denom = 1.0 + np.bincount(op, weights=lam, minlength=len(outb))
    post = lam / denom[op]
    # Exclusivity: an inbound message leaves the relay once.
    inflow = np.bincount(i, weights=post, minlength=len(b.time))
    post = post / np.maximum(inflow[i], 1.0)
    none = 1.0 - np.bincount(op, weights=post, minlength=len(outb))
    return op, i, post, none


def poisson_tail(x: np.ndarray, mu: np.ndarray, terms: int = 400) -> np.ndarray:
    """P(X >= x) for X ~ Poisson(mu), continuous in x (regularized lower incomplete gamma P(x, mu)), for
    x > 0; by series, exact enough where it matters (x above mu)."""
    x = np.maximum(np.asarray(x, dtype=float), 1e-9)
    mu = np.maximum(np.asarray(mu, dtype=float), 1e-300)
    lgx = np.array([math.lgamma(v + 1.0) for v in np.atleast_1d(x)]).reshape(np.shape(x))
    term = np.ones_like(x)
    total = np.ones_like(x)
    for n in range(1, terms):
        term = term * mu / (x + n)
        total = total + term
        if np.all(term < 1e-12 * total):
            break
    logp = x * np.log(mu) - mu - lgx + np.log(total)
    return np.clip(np.exp(logp), 0.0, 1.0)


def _periods(dev: np.ndarray, t: np.ndarray, ndev: int) -> np.ndarray:
    """Per device: the period of its message stream if it is periodic (gaps within PERIODIC_SPREAD of
    their median, at least 5 of them), else 0."""
    out = np.zeros(ndev)
    order = np.lexsort((t, dev))
    d, tt = dev[order], t[order]
    same = d[1:] == d[:-1]
    g_dev, gaps = d[1:][same], np.diff(tt)[same]
    bounds = np.searchsorted(g_dev, np.arange(ndev + 1))
    for x in range(ndev):
        g = gaps[bounds[x]:bounds[x + 1]]
        if len(g) >= 5:
            m = float(np.median(g))
            if m > 0 and float(np.median(np.abs(g - m))) <= PERIODIC_SPREAD * m:
                out[x] = m
    return out


def _shifted(b: Bursts, shift: float) -> Bursts:
    """`b` with its outbound messages (and the connections they came down) moved by `shift` seconds."""
    out = b.direction == OUTBOUND
    opened = None if b.opened is None else np.where(out, b.opened + shift, b.opened)
    return Bursts(np.where(out, b.time + shift, b.time), b.device, b.direction, b.size, b.ident, opened)


def _possible(b: Bursts, o: np.ndarray, i: np.ndarray, moved: np.ndarray | float = 0.0) -> np.ndarray:
    """Which (outbound o, inbound i) pairs a relay could have made: different devices, and the recipient's
    connection already open when the message came in (a relay pushes down a connection it holds; a
    connection that opens only afterwards is the device's own new session, as every web or mail client's
    is, not the relay's delivery). `moved`: how far each outbound message (and its connection) is shifted."""
    keep = b.device[o] != b.device[i]
    if b.opened is not None:
        keep &= b.opened[o] + moved <= b.time[i]
    return keep


class _Placements:
    """The pair samples of one relay's bursts, real and with outbound times shifted beyond WINDOW (the
    nulls), each drawn once on first use and shared by both modes' EMs."""

    def __init__(self, b: Bursts, inb: np.ndarray, outb: np.ndarray, seed: int) -> None:
        self.b, self.inb, self.outb, self.seed = b, inb, outb, seed
        self._drawn: dict[float, PairSample] = {}

    def pairs(self, shift: float) -> PairSample:
        if shift not in self._drawn:
            b = self.b if shift == 0.0 else _shifted(self.b, shift)
            self._drawn[shift] = pair_sample(b, self.inb, self.outb, self.seed)
        return self._drawn[shift]


def _survives_null(placements: _Placements, candidate: DelayModel) -> bool:
    """Is the candidate's excess a relay delay, or structure any unrelated traffic has (periodic slots,
    batches)? The same EM on outbound times shifted beyond WINDOW, where no true pair can fall, says: the
    real excess must clearly beat the larger of two shifted ones. A shifted stream overlaps the capture
    less than the real one (a capture shorter than the shift: not at all), so each null's signal is scaled
    by the real sample's exposure over the null's (how much of the outbound messages' windows the inbound
    stream spans: the capture's ends, not how busy it is there); a null with no exposure says nothing, and
    an excess nothing can be compared with is not believed. Records the larger null signal in the
    candidate and clears its support when it does not survive; when the first shift already rejects, the
    second (which could only raise the bar) is not run, and the first's signal is the one recorded."""
    candidate.null_signal = 0.0
    for sign in (1.0, -1.0):
        null = fit_delay_model(placements.pairs(sign * (WINDOW + NULL_OFFSET)), candidate.mode)
        scaled = null.signal * candidate.exposure / null.exposure if null.exposure > 0 else math.inf
        candidate.null_signal = max(candidate.null_signal, scaled)
        if candidate.signal < MIN_SIGNAL + 2.0 * candidate.null_signal + 3.0 * math.sqrt(candidate.null_signal):
            candidate.support = None
            return False
    return True


def _choose_model(b: Bursts, inb: np.ndarray, outb: np.ndarray, seed: int) -> DelayModel:
    """The delay model of the mode ("size", "delay") whose support survives its null test, the one with the
    larger signal when both do (size on a tie); when neither does, the size mode's model. Both modes read
    the same pair samples (`_Placements`)."""
    placements = _Placements(b, inb, outb, seed)
    model = None
    for mode in ("size", "delay"):
        candidate = fit_delay_model(placements.pairs(0.0), mode)
        if candidate.support is not None:
            _survives_null(placements, candidate)
        if model is None or (candidate.support is not None
                             and (model.support is None or candidate.signal > model.signal)):
            model = candidate
    return model


def correlate(b: Bursts, seed: int = 0) -> Correlation:
    """Learn the relay's delay and size model, attribute each outbound message to candidate senders,
    and test every (sender, recipient) pair against the time-shifted null."""
    order = np.argsort(b.time, kind="stable")
    inb = order[b.direction[order] == INBOUND]
    outb = order[b.direction[order] == OUTBOUND]
    model = _choose_model(b, inb, outb, seed)
    empty = Correlation(model, outb, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.ones(len(outb)))
    if model.support is None or not len(outb) or not len(inb):
        return empty
    op, ip, post, none = _posteriors(b, model, inb, outb, b.time[outb])
    result = Correlation(model, outb, op, ip, post, none)

    ndev = int(b.device.max()) + 1
    senders, recipients = b.device[ip], b.device[outb][op]
    keys = senders * ndev + recipients
    # Null: the same attribution for outbound times shifted outside the support (NULL_SHIFTS of them).
    # A recipient whose outbound stream is periodic (constant-rate slots) is shifted by whole periods,
    # so a pair whose slot phases happen to line up collects in the null what it collects by chance.
    lo, hi = model.support
    base = 2.0 * hi + NULL_OFFSET
    out_dev, t_out = b.device[outb], b.time[outb]
    period = _periods(out_dev, t_out, ndev)[out_dev]
    null_keys, null_post = [], []
    for k in NULL_SHIFTS:
        plain = abs(k) * base * (1.37 ** (abs(k) - 1))
        whole = np.ceil(plain / np.maximum(period, 1e-9)) * period
        shift = np.sign(k) * np.where(period > 0, whole, plain)
        nop, nip, npost, _ = _posteriors(b, model, inb, outb, t_out + shift)
        null_keys.append(b.device[nip] * ndev + out_dev[nop])
        null_post.append(npost)
    nk, npo = np.concatenate(null_keys), np.concatenate(null_post)
    shifts = float(len(NULL_SHIFTS))
    null_by_sender = np.bincount(nk // ndev, weights=npo, minlength=ndev)
    share = np.bincount(b.device[inb], minlength=ndev) / max(len(inb), 1)
    a0 = (null_by_sender + share) / (shifts * len(outb) + 1.0)  # per outbound message, per sender
    received = np.bincount(out_dev, minlength=ndev)

    ukeys, inv = np.unique(keys, return_inverse=True)
    mass = np.bincount(inv, weights=post, minlength=len(ukeys))
    s_of, r_of = ukeys // ndev, ukeys % ndev
    nu, ninv = np.unique(nk, return_inverse=True)
    pair_null = np.zeros(len(ukeys))
    if len(nu):
        nmass = np.bincount(ninv, weights=npo) / shifts
        j = np.clip(np.searchsorted(nu, ukeys), 0, len(nu) - 1)
        pair_null = np.where(nu[j] == ukeys, nmass[j], 0.0)
    mu0 = np.maximum(received[r_of] * a0[s_of], pair_null)
    tested = mass > 0
    pvals = np.ones(len(ukeys))
    candidate = tested & (mass >= MIN_MASS) & (mass > mu0)  # the rest cannot be emitted: p = 1, still counted
    pvals[candidate] = poisson_tail(mass[candidate], mu0[candidate])
    cutoff = _bh_cutoff(pvals[tested])
    emit = candidate & (pvals <= cutoff) & (cutoff > 0)
    result.pvalue_cutoff = cutoff
    if not emit.any():
        return result

    # When each emitted link first passed the cutoff: its contributions in time order, the null growing
    # with the recipient's outbound messages so far.
    out_dev, out_time = b.device[outb], b.time[outb]
    by_r = np.lexsort((out_time, out_dev))
    rank_in_recipient = np.empty(len(outb), dtype=np.int64)
    rank_in_recipient[by_r] = np.arange(len(outb)) - np.searchsorted(out_dev[by_r], out_dev[by_r], side="left")
    sel = np.nonzero(emit[inv])[0]
    sel = sel[np.lexsort((out_time[op[sel]], inv[sel]))]
    group = inv[sel]
    cum = np.cumsum(post[sel])
    starts = np.r_[0, np.nonzero(group[1:] != group[:-1])[0] + 1]
    cum -= np.repeat(np.r_[0.0, cum[starts[1:] - 1]], np.diff(np.r_[starts, len(sel)]))
    ok = cum >= MIN_MASS
    p_run = np.ones(len(sel))
    p_run[ok] = poisson_tail(cum[ok], (rank_in_recipient[op[sel[ok]]] + 1) * a0[s_of[group[ok]]])
    passed = np.nonzero(ok & (p_run <= cutoff))[0]
    linked_at = {}
    if len(passed):
        firsts = passed[np.r_[True, group[passed][1:] != group[passed][:-1]]]
        linked_at = dict(zip(group[firsts].tolist(), out_time[op[sel[firsts]]].tolist()))
    # Outbound messages whose most likely source is the pair's sender.
    best = np.lexsort((-post, op))
    firsts = best[np.r_[True, op[best][1:] != op[best][:-1]]]
    top_keys, top_n = np.unique(inv[firsts], return_counts=True)
    top_counts = dict(zip(top_keys.tolist(), top_n.tolist()))
    for u in np.nonzero(emit)[0].tolist():
        result.links.append(Link(int(s_of[u]), int(r_of[u]), float(mass[u]), float(mu0[u]), float(pvals[u]),
                                 linked_at.get(u), top_counts.get(u, 0)))
    return result


def _bh_cutoff(pvals: np.ndarray, q: float = FDR_Q) -> float:
    """Benjamini-Hochberg: the largest p-value that passes at false discovery rate q (0: none passes)."""
    m = len(pvals)
    if not m:
        return 0.0
    ranked = np.sort(pvals)
    ok = np.nonzero(ranked <= q * np.arange(1, m + 1) / m)[0]
    return float(ranked[ok[-1]]) if len(ok) else 0.0


def disclosure(b: Bursts, model: DelayModel | None = None) -> Correlation | None:
    """Statistical disclosure over a batching relay's rounds (Danezis 2003), or None if it does not batch.

    A round is a flush: outbound messages less than FLUSH_GAP apart. Its anonymity set is every inbound
    message since the previous flush, each equally likely the source of each outbound one. Per pair
    (s, r), O = sum over r's outbound messages of s's share of the round; under the null it has mean
    n_r * mu_s and variance n_r * var_s (s's share over all outbound messages). One-sided normal
    p-values, Benjamini-Hochberg at FDR_Q, O - n_r * mu_s >= MIN_MASS. Rounds are found with one sort,
    pairs are (outbound x inbound within its round): O(n log n + sum of round sizes squared)."""
    order = np.argsort(b.time, kind="stable")
    inb = order[b.direction[order] == INBOUND]
    outb = order[b.direction[order] == OUTBOUND]
    if len(outb) < 2 or not len(inb):
        return None
    t_out = b.time[outb]
    new = np.r_[True, np.diff(t_out) > FLUSH_GAP]
    rid = np.cumsum(new) - 1
    sizes = np.bincount(rid)
    if (sizes[rid] >= 2).mean() < BATCHED_SHARE or len(sizes) < SDA_MIN_ROUNDS:
        return None
    flush = t_out[new]
    prev = np.r_[-np.inf, flush[:-1]]
    lo = np.searchsorted(b.time[inb], prev, side="right")
    hi = np.searchsorted(b.time[inb], flush, side="left")
    counts = np.maximum(hi - lo, 0)[rid]  # per outbound: inbound messages in its round
    op = np.repeat(np.arange(len(outb)), counts)
    first = np.cumsum(counts) - counts
    ip = inb[np.arange(int(counts.sum())) - np.repeat(first, counts) + np.repeat(lo[rid], counts)]
    keep = _possible(b, outb[op], ip)
    op, ip = op[keep], ip[keep]
    # Within a round, sizes still speak if they survive the relay (the learned size-difference ratios).
    weight = np.ones(len(op))
    if model is not None and len(model.size_values):
        dsize = b.size[outb][op] - b.size[ip]
        j = np.clip(np.searchsorted(model.size_values, dsize), 0, len(model.size_values) - 1)
        weight = np.where(model.size_values[j] == dsize, model.lam_s[j], 1.0)
    post = weight / np.bincount(op, weights=weight, minlength=len(outb))[op]
    none = 1.0 - np.bincount(op, weights=post, minlength=len(outb))
    result = Correlation(model, outb, op, ip, post, none)
    ndev = int(b.device.max()) + 1
    s_dev, r_dev = b.device[ip], b.device[outb][op]
    keys = s_dev * ndev + r_dev
    n_out = len(outb)
    # s's share per outbound message, its mean and variance over all outbound messages.
    share_key = op * ndev + s_dev
    uk, uinv = np.unique(share_key, return_inverse=True)
    share = np.bincount(uinv, weights=post)
    mu = np.bincount(uk % ndev, weights=share, minlength=ndev) / n_out
    var = np.maximum(np.bincount(uk % ndev, weights=share ** 2, minlength=ndev) / n_out - mu ** 2, 1e-12)
    received = np.bincount(b.device[outb], minlength=ndev)
    ukeys, inv = np.unique(keys, return_inverse=True)
    mass = np.bincount(inv, weights=post)
    s_of, r_of = ukeys // ndev, ukeys % ndev
    expect = received[r_of] * mu[s_of]
    z = (mass - expect) / np.sqrt(received[r_of] * var[s_of])
    pvals = np.array([0.5 * math.erfc(v / math.sqrt(2.0)) for v in z.tolist()])
    cutoff = _bh_cutoff(pvals)
    result.pvalue_cutoff = cutoff
    for u in np.nonzero((pvals <= cutoff) & (cutoff > 0) & (mass - expect >= MIN_MASS))[0].tolist():
        result.links.append(Link(int(s_of[u]), int(r_of[u]), float(mass[u]), float(expect[u]), float(pvals[u]),
                                 None, 0))
    return result


class _Records:
    """Every message burst of every TCP flow, one row each, held in typed columns (about 50 bytes a row,
    not a Python object: a large capture has millions); strings as codes into small tables."""

    def __init__(self) -> None:
        self.time = array("d")
        self.direction = array("b")
        self.size = array("q")
        self.ident = array("q")
        self.device = array("q")  # code into `strings`: the flow's client address
        self.hub = array("q")  # code into `strings`: the flow's server endpoint
        self.flow = array("q")  # code into `flows`
        self.opened = array("d")  # per flow (by its code, as `flows`): when it was opened (-inf: unknown)
        self.strings = NameCodes()
        self.flows: list[str] = []

    def code(self, name: str) -> int:
        return self.strings.code(name)

    @property
    def names(self) -> list[str]:
        """The strings coded so far, by code."""
        return self.strings.names

    def by_hub(self) -> Iterator[tuple[str, np.ndarray]]:
        """(hub, its rows in the order they were added), hubs in address order."""
        hub = np.frombuffer(self.hub, dtype=np.int64) if len(self.hub) else np.zeros(0, np.int64)
        order = np.argsort(hub, kind="stable")
        bounds = np.searchsorted(hub[order], np.arange(len(self.names) + 1))
        names = self.names
        for code in sorted(range(len(names)), key=names.__getitem__):
            rows = order[bounds[code]:bounds[code + 1]]
            if len(rows):
                yield names[code], rows


@register
class RelayCorrelation(Analyzer):
    """Links senders to recipients through a relay by delay, size and envelope-id correlation."""

    id = ID
    cost = 0.9  # relative CPU cost (Analyzer.cost), measured at 1M packets: balances analyze --jobs
    finish_reads_flows = False  # finish works from what on_flow kept
    description = ("Matches message bursts devices send to a relay with the bursts the relay sends to other "
                   "devices (delay and size distributions learned from the capture, statistical disclosure "
                   "over rounds) and reports sender -> recipient links and per-message candidate senders.")

    def __init__(self, knowledge) -> None:
        super().__init__(knowledge)
        self._rows = _Records()

    def on_flow(self, flow: Flow) -> Iterable[Finding]:
        if flow.proto != "tcp":
            return ()
        rows = self._rows
        device, hub, flow_code = rows.code(flow.src_ip), rows.code(flow.dst), len(rows.flows)
        added = False
        for burst in views.messages(flow):
            first = burst.units[0]
            rows.time.append(burst.start_time)
            rows.direction.append(INBOUND if burst.direction == CLIENT else OUTBOUND)
            rows.size.append(burst.payload)
            rows.ident.append(first.msg_id if first.msg_id is not None else -1)
            rows.device.append(device)
            rows.hub.append(hub)
            rows.flow.append(flow_code)
            added = True
        if added:
            rows.flows.append(flow.id)
            # Opened when first seen only if its SYN was: a flow picked up mid-stream (the capture began
            # later, or the observe tier split it after an idle spell) was open before anyone saw it.
            rows.opened.append(flow.first_seen if flow.handshake else -math.inf)
        return ()

    def finish(self, flows: Sequence[Flow]) -> Iterator[Finding]:
        """Per candidate relay, in address order; a generator, so only one relay's findings exist at once."""
        rows = self._rows
        names = rows.names
        columns = {k: np.frombuffer(getattr(rows, k), dtype=dt) if len(rows.time) else np.zeros(0, dt)
                   for k, dt in (("time", np.float64), ("direction", np.int8), ("size", np.int64),
                                 ("ident", np.int64), ("device", np.int64), ("flow", np.int64))}
        opened = np.frombuffer(rows.opened, dtype=np.float64) if len(rows.opened) else np.zeros(0)
        for hub, at in rows.by_hub():
            device_codes = columns["device"][at]
            direction = columns["direction"][at]
            present = np.unique(device_codes)
            devices = sorted(names[c] for c in present.tolist())
            if len(devices) < 2 or set(np.unique(direction).tolist()) != {INBOUND, OUTBOUND}:
                continue  # not a relay: nothing comes back out to other devices
            local = np.zeros(len(names), np.int64)
            position = {name: n for n, name in enumerate(devices)}
            local[present] = [position[names[c]] for c in present.tolist()]
            b = Bursts(columns["time"][at], local[device_codes], direction, columns["size"][at],
                       columns["ident"][at], opened[columns["flow"][at]])
            c = correlate(b)
            rule = "relay-delay-size-correlation"
            if c.model.support is None:
                rounds = disclosure(b, c.model)
                if rounds is not None:
                    c, rule = rounds, "statistical-disclosure"
            yield from self._findings(hub, b, [rows.flows[i] for i in columns["flow"][at].tolist()],
                                      devices, c, rule)

    def _findings(self, hub: str, b: Bursts, flow_ids: list[str], devices: list[str], c: Correlation,
                  rule: str) -> list[Finding]:
        out = []
        model = c.model
        model_ev = {"relay": hub, "delay_support_s": [round(x, 4) for x in model.support] if model.support else None,
                    "signal_messages": round(model.signal, 2), "null_signal_messages": round(model.null_signal, 2) if math.isfinite(model.null_signal) else None,
                    "sample": model.sample,
                    "id_ratio_equal": round(model.lam_id[0], 3), "pvalue_cutoff": c.pvalue_cutoff}
        for link in c.links:
            ev = {"rule": rule, **model_ev, "mass": round(link.mass, 3),
                  "null_mass": round(link.null, 4), "pvalue": link.pvalue, "top_messages": link.messages}
            if link.linked_at is not None:
                ev["linked_at"] = round(link.linked_at, 6)
            out.append(Finding(ID, "contacts", "relay-link" if rule != "statistical-disclosure" else "disclosure-link",
                               None, {"sender": devices[link.sender], "recipient": devices[link.recipient]},
                               ev, confidence=1.0 - link.pvalue))
        # Per outbound message: the adversary's distribution over senders (for anonymity metrics). A message
        # no sender reaches CANDIDATE_MIN for says nothing (the scorer reads it as a message without a
        # finding: uniform over every user), so it gets none: an ordinary server's replies are not contacts.
        cand: dict[int, dict[str, float]] = {}
        sender = b.device.tolist()
        for j, i, p in zip(c.pair_out.tolist(), c.pair_in.tolist(), c.posterior.tolist()):
            d = cand.setdefault(j, {})
            name = devices[sender[i]]
            d[name] = d.get(name, 0.0) + p
        times, sizes = b.time.tolist(), b.size.tolist()
        for j, idx in enumerate(c.out_index.tolist()):
            t = times[idx]
            dist = {k: round(v, 4) for k, v in sorted((cand.get(j) or {}).items()) if v >= CANDIDATE_MIN}
            if not dist:
                continue
            out.append(Finding(ID, "contacts", "sender-candidates", flow_ids[idx],
                               {"recipient": devices[sender[idx]], "time": round(t, 3), "candidates": dist,
                                "unattributed": round(max(float(c.none[j]), 0.0), 4)},
                               {"rule": rule, "time": round(t, 6), "relay": hub,
                                "bytes": sizes[idx]}, confidence=max(dist.values(), default=0.0)))
        return out
