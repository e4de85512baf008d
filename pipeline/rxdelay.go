package pipeline

import (
	"encoding/binary"
	"math/bits"
	"sync/atomic"
)

// The rx stamp: what an XDP program loaded with an rx stamp
// (bpf.RedirectOptions.RxStamp) writes in the XDP metadata area, the
// RxStampLen bytes just before a frame's data, which AF_XDP hands to the
// socket with the frame: the time the program redirected the frame
// (bpf_ktime_get_ns, CLOCK_MONOTONIC, monotime's clock) and a check word,
// that time xor rxStampMagic, both native-endian. bpf/xsk.h writes it:
// keep in step.
const (
	// RxStampLen is the size of the stamp in front of a frame.
	RxStampLen   = 16
	rxStampMagic = 0x58445053544d5031
)

// takeStamp returns the rx stamp in front of p's data, and invalidates it
// so that the frame's next use cannot read it again: a frame received
// without one (the program's bpf_xdp_adjust_meta refused by a driver
// without metadata support) leaves the headroom as it was. ok is false
// when p carries no stamp.
func takeStamp(p *Packet) (ns int64, ok bool) {
	if p.Off < RxStampLen {
		return 0, false
	}
	m := p.Frame[p.Off-RxStampLen : p.Off]
	t := binary.NativeEndian.Uint64(m)
	if binary.NativeEndian.Uint64(m[8:]) != t^rxStampMagic {
		return 0, false
	}
	binary.NativeEndian.PutUint64(m[8:], 0)
	return int64(t), true
}

// The rx delay histogram's buckets: powers of two of nanoseconds, from
// 2^DelayMinShift (256 ns) to 2^(DelayMinShift+DelayBuckets-1) (about
// 1.07 s), and one more for longer delays. A power of two keeps the
// bucket a bit count, and the histogram within a factor of two of any
// quantile across six orders of magnitude.
const (
	DelayMinShift = 8
	DelayBuckets  = 23
)

// DelayBound is bucket i's upper bound in nanoseconds (inclusive), for i
// below DelayBuckets.
func DelayBound(i int) int64 { return 1 << (DelayMinShift + i) }

// delayBucket is the bucket of a delay of ns nanoseconds: the first whose
// bound is ns or more, DelayBuckets past the last bound. Negative delays
// (the two clock readings' skew) go to the first.
func delayBucket(ns int64) int {
	if ns <= 1<<DelayMinShift {
		return 0
	}
	return min(bits.Len64(uint64(ns-1))-DelayMinShift, DelayBuckets)
}

// DelayStats is a worker's rx delay histogram: how long frames took from
// the XDP program that stamped them to the worker's stage chain. Written
// by its worker once per burst (an atomic add per bucket the burst
// touched), read atomically by any goroutine.
type DelayStats struct {
	_ [cacheLine]byte
	// Counts[i] counts the delays in bucket i (not cumulative):
	// DelayBound(i-1) < delay <= DelayBound(i); Counts[DelayBuckets] the
	// longer ones.
	Counts [DelayBuckets + 1]atomic.Uint64
	// SumNanos is the sum of the delays counted, in nanoseconds.
	SumNanos atomic.Uint64
	_        [cacheLine]byte
}

// delayBurst is one burst's delays, the worker's own until add publishes
// them: plain counts per packet, atomic adds per burst.
type delayBurst struct {
	counts  [DelayBuckets + 1]uint32
	touched uint32 // bit i: counts[i] > 0
	sum     uint64
}

// observe counts a delay of ns nanoseconds.
func (d *delayBurst) observe(ns int64) {
	i := delayBucket(ns)
	d.counts[i]++
	d.touched |= 1 << i
	d.sum += uint64(max(ns, 0))
}

// add publishes the burst's delays to s and empties d.
func (d *delayBurst) add(s *DelayStats) {
	if d.touched == 0 {
		return
	}
	for t := d.touched; t != 0; t &= t - 1 {
		i := bits.TrailingZeros32(t)
		s.Counts[i].Add(uint64(d.counts[i]))
		d.counts[i] = 0
	}
	s.SumNanos.Add(d.sum)
	d.touched, d.sum = 0, 0
}

// record counts, for every packet of b that carries an rx stamp, its
// delay at now.
func (d *delayBurst) record(b *Burst, now int64, s *DelayStats) {
	for i := range b.Pkts {
		if t, ok := takeStamp(&b.Pkts[i]); ok {
			d.observe(now - t)
		}
	}
	d.add(s)
}
