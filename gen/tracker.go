package gen

import (
	"fmt"
	"math"
	"math/bits"
	"time"
)

// trackWindow is how many sequence numbers below the highest seen the
// Tracker remembers, to tell a late frame from a duplicate, in trackWords
// blocks of 64. Each word carries the block it holds (epoch), so moving
// the window clears nothing: a word of an older block reads as empty.
// xdpipe's tracking XDP program (bpf/track.c) keeps the same window, which
// a verifier can check without a loop.
const (
	trackWindow = 1 << 16
	trackWords  = trackWindow / 64
)

// Tracker is receiver-side accounting of generated frames: loss,
// duplicates, reordering and one-way latency. Feed it every received frame
// with Observe; it recognises generated frames by Magic and ignores others.
//
// A Tracker belongs to one goroutine (a receive loop); it allocates nothing
// after New. Per-queue Trackers are combined with Merge for a report (loss
// and duplicates are then exact only if each flow of sequence numbers went
// to one tracker: use one Tracker per generator run where frames of a run
// spread over queues, or read the per-queue counts).
//
// Sequence numbers start at 0 for each generator run. Loss counts the
// sequence numbers below the highest seen that never arrived (frames lost
// after the highest are only visible against the sender's count: Stats.Lost
// with Expect). The duplicate window holds the sequence numbers in blocks
// of 64, the highest's block and the 1023 before it (65,472 to 65,536
// numbers): a frame from an older block is counted as Late without a
// duplicate check.
type Tracker struct {
	received  uint64 // generated frames seen, duplicates included
	unique    uint64 // distinct sequence numbers seen
	dups      uint64
	reordered uint64 // arrived after a higher sequence number
	late      uint64 // too old for the window: not checked for duplicates
	others    uint64 // frames without the magic
	bytes     uint64 // bytes of generated frames
	maxSeq    uint64
	anySeen   bool
	window    [trackWords]uint64 // bit s%64 of word block(s)%trackWords: s seen, if epoch says that block
	epoch     [trackWords]uint64 // block(s)+1 of the block a window word holds, 0: none
	lat       Histogram
	negLat    uint64 // timestamps in the future: clocks not shared
}

// NewTracker returns an empty Tracker.
func NewTracker() *Tracker { return &Tracker{} }

// Reset empties the tracker for a new run.
func (t *Tracker) Reset() { *t = Tracker{} }

// Observe accounts one received frame; now is CLOCK_MONOTONIC ns
// (monotime.Now, read once per burst). It returns whether the frame was a
// generated one. It allocates nothing.
func (t *Tracker) Observe(frame []byte, now int64) bool {
	p, ok := Parse(frame)
	if !ok {
		t.others++
		return false
	}
	t.ObservePayload(p, len(frame), now)
	return true
}

// ObservePayload accounts a payload already parsed (Parse) from a frame of
// size bytes.
func (t *Tracker) ObservePayload(p Payload, size int, now int64) {
	t.received++
	t.bytes += uint64(size)
	t.addLatency(p, now)
	s := p.Seq
	switch {
	case !t.anySeen:
		t.anySeen = true
		t.maxSeq = s
		t.set(s)
		t.unique++
	case s > t.maxSeq:
		t.maxSeq = s
		t.set(s)
		t.unique++
	case t.maxSeq/64-s/64 >= trackWords:
		t.late++
		t.reordered++
		t.unique++
	case t.seen(s):
		t.dups++
	default:
		t.set(s)
		t.unique++
		if s != t.maxSeq {
			t.reordered++
		}
	}
}

func (t *Tracker) addLatency(p Payload, now int64) {
	if d := now - p.Sent; d >= 0 {
		t.lat.Add(uint64(d))
	} else {
		t.negLat++
	}
}

// set marks s seen; the word of its block is emptied first if it held an
// older block.
func (t *Tracker) set(s uint64) {
	w := (s / 64) % trackWords
	if t.epoch[w] != s/64+1 {
		t.epoch[w], t.window[w] = s/64+1, 0
	}
	t.window[w] |= 1 << (s % 64)
}

// seen says s was marked, for s within the window.
func (t *Tracker) seen(s uint64) bool {
	w := (s / 64) % trackWords
	return t.epoch[w] == s/64+1 && t.window[w]&(1<<(s%64)) != 0
}

// Merge adds o's counts and latencies into t. The duplicate window is not
// merged; MaxSeq becomes the larger of the two.
func (t *Tracker) Merge(o *Tracker) {
	t.MergeCounts(&Counts{Received: o.received, Unique: o.unique, Duplicates: o.dups, Reordered: o.reordered,
		Late: o.late, Others: o.others, Bytes: o.bytes, MaxSeq: o.maxSeq, AnySeen: o.anySeen})
	t.negLat += o.negLat
	t.lat.Merge(&o.lat)
}

// Counts are a Tracker's counts made elsewhere: by xdpipe's tracking XDP
// program (bpf.LoadTrackingRedirect), which applies ObservePayload's rules
// at the hook but for latency. MergeCounts adds them into a Tracker.
type Counts struct {
	Received, Unique, Duplicates, Reordered, Late, Others, Bytes uint64
	// MaxSeq is the highest sequence number seen, if AnySeen.
	MaxSeq  uint64
	AnySeen bool
}

// MergeCounts adds c into t, as Merge adds another Tracker's counts.
func (t *Tracker) MergeCounts(c *Counts) {
	t.received += c.Received
	t.unique += c.Unique
	t.dups += c.Duplicates
	t.reordered += c.Reordered
	t.late += c.Late
	t.others += c.Others
	t.bytes += c.Bytes
	if c.AnySeen && (!t.anySeen || c.MaxSeq > t.maxSeq) {
		t.maxSeq = c.MaxSeq
	}
	t.anySeen = t.anySeen || c.AnySeen
}

// SampleLatency records the one-way latency of frame if it is a generated
// one, and counts nothing else: for a receiver whose frames are counted
// elsewhere (MergeCounts) and that reads only some of them. It reports
// whether the frame was a generated one.
func (t *Tracker) SampleLatency(frame []byte, now int64) bool {
	p, ok := Parse(frame)
	if ok {
		t.addLatency(p, now)
	}
	return ok
}

// Stats is a Tracker's report.
type Stats struct {
	Received   uint64 // generated frames, duplicates included
	Unique     uint64 // distinct sequence numbers
	Duplicates uint64
	Reordered  uint64 // arrived after a higher sequence number
	Late       uint64 // of Reordered, too late to check for duplicates
	Others     uint64 // frames that were not generated ones
	Bytes      uint64
	MaxSeq     uint64 // highest sequence number seen
	Expected   uint64 // MaxSeq+1, or the sender's count if given to Stats
	Lost       uint64 // Expected - Unique
	// One-way latency in ns (only meaningful with a shared clock), of
	// LatencySamples frames: every generated frame received, or a sample
	// (SampleLatency).
	LatencySamples                                  uint64
	LatencyP50, LatencyP99, LatencyP999, LatencyMax uint64
	ClockSkewed                                     uint64 // frames stamped in the receiver's future
}

// Stats reports what the tracker saw. sent is the sender's count if known
// (0: assume the highest sequence number seen was the last one sent).
func (t *Tracker) Stats(sent uint64) Stats {
	s := Stats{
		Received: t.received, Unique: t.unique, Duplicates: t.dups, Reordered: t.reordered,
		Late: t.late, Others: t.others, Bytes: t.bytes, MaxSeq: t.maxSeq, ClockSkewed: t.negLat,
		LatencySamples: t.lat.Count(), LatencyP50: t.lat.Quantile(0.50), LatencyP99: t.lat.Quantile(0.99),
		LatencyP999: t.lat.Quantile(0.999), LatencyMax: t.lat.Max(),
	}
	if t.anySeen {
		s.Expected = t.maxSeq + 1
	}
	s.Expected = max(s.Expected, sent)
	if s.Expected > s.Unique {
		s.Lost = s.Expected - s.Unique
	}
	return s
}

// LessDropped takes n frames that were accounted before the kernel dropped
// them (at the XDP hook, when the socket's RX ring was full) out of
// Received and Unique and adds them to Lost: what the receiver got. It
// takes the dropped frames for generated, distinct ones, as they are when
// only the generator sends.
func (s Stats) LessDropped(n uint64) Stats {
	n = min(n, s.Unique)
	s.Received -= n
	s.Unique -= n
	s.Lost += n
	return s
}

func (s Stats) String() string {
	return fmt.Sprintf("received %d (unique %d) of %d: lost %d, duplicates %d, reordered %d; latency of %d: p50 %v p99 %v p99.9 %v max %v",
		s.Received, s.Unique, s.Expected, s.Lost, s.Duplicates, s.Reordered, s.LatencySamples,
		time.Duration(s.LatencyP50), time.Duration(s.LatencyP99), time.Duration(s.LatencyP999), time.Duration(s.LatencyMax))
}

// Histogram is a fixed log-bucketed histogram of non-negative values
// (nanoseconds): 16 sub-buckets per power of two, so a quantile is within
// 1/16 (6.25%) of the true value, over the whole uint64 range. The zero
// value is ready; Add allocates nothing.
type Histogram struct {
	counts [64 * histSub]uint64
	n      uint64
	max    uint64
}

const (
	histSubBits = 4
	histSub     = 1 << histSubBits
)

// bucket maps v to its bucket: values below 16 have their own; above, the
// power of two and the next 4 bits below the top bit pick it.
func bucket(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - 1 // >= histSubBits
	sub := (v >> (e - histSubBits)) & (histSub - 1)
	return (e-histSubBits+1)*histSub + int(sub)
}

// bucketHigh is the largest value in bucket i.
func bucketHigh(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := i/histSub + histSubBits - 1
	sub := uint64(i % histSub)
	lo := (1 << e) | sub<<(e-histSubBits)
	return lo + (1 << (e - histSubBits)) - 1
}

// Add records v.
func (h *Histogram) Add(v uint64) {
	h.counts[bucket(v)]++
	h.n++
	h.max = max(h.max, v)
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest value recorded.
func (h *Histogram) Max() uint64 { return h.max }

// Merge adds o into h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Quantile returns the upper edge of the bucket holding the q-quantile
// (0 < q <= 1), capped at Max; 0 when empty.
func (h *Histogram) Quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var acc uint64
	for i, c := range h.counts {
		acc += c
		if acc >= rank {
			return min(bucketHigh(i), h.max)
		}
	}
	return h.max
}
