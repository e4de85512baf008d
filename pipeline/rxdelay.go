package pipeline

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"sync/atomic"

	"github.com/xdpipe/xdpipe/internal/monotime"
)

// The rx stamp: what an XDP program loaded with an rx stamp
// (bpf.RedirectOptions.RxStamp) writes in the XDP metadata area, the
// RxStampLen bytes just before a frame's data, which AF_XDP hands to the
// socket with the frame: the time the program redirected the frame
// (bpf_ktime_get_ns, CLOCK_MONOTONIC, monotime's clock) and a check word,
// that time xor rxStampMagic, both native-endian. A program bound to its
// interface for the driver's RX metadata
// (bpf.RedirectOptions.RxMetadataIfindex) writes RxMetaLen bytes: the
// metadata (NIC timestamp, u64; hash, u32; hash type, u16; flags, u16),
// then the stamp with the check word the time xor rxMetaMagic, the time 0
// without RxStamp. bpf/xsk.h writes them: keep in step.
const (
	// RxStampLen is the size of the stamp in front of a frame, and
	// RxMetaLen of the RX metadata and the stamp.
	RxStampLen   = 16
	RxMetaLen    = 32
	rxStampMagic = 0x58445053544d5031
	rxMetaMagic  = 0x58445052584d4431
	// The flags of the RX metadata (xsk.h's RX_META_*).
	rxMetaHash      = 1
	rxMetaTimestamp = 2
)

// takeMeta reads the rx stamp, and the RX metadata before it, in front
// of p's data into p's Rx fields, and invalidates them so that the frame's
// next use cannot read them again: a frame received without them (the
// program's bpf_xdp_adjust_meta refused by a driver without metadata
// support) leaves the headroom as it was. It returns the stamp's time, and
// ok false when p carries none.
func takeMeta(p *Packet) (ns int64, ok bool) {
	if p.Off < RxStampLen {
		return 0, false
	}
	m := p.Frame[p.Off-RxStampLen : p.Off]
	t := binary.NativeEndian.Uint64(m)
	switch binary.NativeEndian.Uint64(m[8:]) ^ t {
	case rxStampMagic:
		binary.NativeEndian.PutUint64(m[8:], 0)
		return int64(t), true
	case rxMetaMagic:
		if p.Off < RxMetaLen {
			return 0, false
		}
		binary.NativeEndian.PutUint64(m[8:], 0)
		x := p.Frame[p.Off-RxMetaLen : p.Off-RxStampLen]
		flags := binary.NativeEndian.Uint16(x[14:])
		if flags&rxMetaHash != 0 {
			p.RxHash, p.RxHashType = binary.NativeEndian.Uint32(x[8:]), binary.NativeEndian.Uint16(x[12:])
			p.RxMeta |= RxHasHash
		}
		if flags&rxMetaTimestamp != 0 {
			p.RxTimestamp = int64(binary.NativeEndian.Uint64(x))
			p.RxMeta |= RxHasTimestamp
		}
		return int64(t), t != 0
	}
	return 0, false
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

// observe counts n delays of ns nanoseconds.
func (d *delayBurst) observe(ns int64, n uint32) {
	i := delayBucket(ns)
	d.counts[i] += n
	d.touched |= 1 << i
	d.sum += uint64(max(ns, 0)) * uint64(n)
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

// record reads the rx stamp and RX metadata of every packet of b into
// its fields and, with s, counts the delay of each stamped one at now.
// With the RX metadata the worker reads every packet's metadata area
// anyway; see sample for the stamp alone.
func (d *delayBurst) record(b *Burst, now int64, s *DelayStats) {
	for i := range b.Pkts {
		if t, ok := takeMeta(&b.Pkts[i]); ok && s != nil {
			d.observe(now-t, 1)
		}
	}
	if s != nil {
		d.add(s)
	}
}

// sample looks at the stamp of one packet of b, picked at random, and
// counts its delay, at a clock read only when there is a stamp (one burst
// in about rx_stamp), as that of all len(b.Pkts): on average the
// stamped packets of the burst. Looking at one packet's metadata rather
// than every one's is what keeps the histogram cheap: in copy mode each
// area sits in a cache line the CPU that ran the XDP program wrote, and
// reading it moves the line to the worker's CPU. The program writes every
// frame's area (zeros when no stamp is due), so a stamp in front of a
// packet is this packet's, never one left from an earlier use of its
// buffer. The counts are then an unbiased estimate of the stamped
// packets', with fewer samples: about one per rx_stamp bursts.
func (d *delayBurst) sample(b *Burst, s *DelayStats) {
	n := len(b.Pkts)
	if n == 0 {
		return
	}
	// math/rand/v2's global source: per thread, no lock, no allocation.
	if t, ok := takeMeta(&b.Pkts[rand.IntN(n)]); ok {
		d.observe(monotime.Now()-t, uint32(n))
		d.add(s)
	}
}
