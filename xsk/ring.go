package xsk

import (
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// RingOffsets locates a ring's words inside its memory region: the byte
// offsets of the producer index, the consumer index, the flags word and the
// first descriptor (the kernel's struct xdp_ring_offset, read with
// XDP_MMAP_OFFSETS). Fakes lay rings out like the kernel does
// (xsktest.RingLayout).
type RingOffsets struct {
	Producer, Consumer, Desc, Flags uint64
}

func offsetsFrom(o unix.XDPRingOffset) RingOffsets {
	return RingOffsets{Producer: o.Producer, Consumer: o.Consumer, Desc: o.Desc, Flags: o.Flags}
}

// ringWords is what every ring shares: pointers to the producer, consumer
// and flags words in the ring's memory, and its geometry.
type ringWords struct {
	producer *uint32
	consumer *uint32
	flags    *uint32
	size     uint32
	mask     uint32
	mem      []byte // the region; unmapped by the owner, not by the ring
	// base is the index the ring started at (0 for a kernel ring), so
	// frame accounting can turn free-running indices into counts.
	base uint32
}

func newRingWords(mem []byte, off RingOffsets, size uint32, elemSize uint64, what string) (ringWords, error) {
	if err := CheckRingSize(uint64(size)); err != nil {
		return ringWords{}, fmt.Errorf("%s %w", what, err)
	}
	need := off.Desc + uint64(size)*elemSize
	for _, o := range []uint64{off.Producer, off.Consumer, off.Flags} {
		if o+4 > need {
			need = o + 4
		}
	}
	if uint64(len(mem)) < need {
		return ringWords{}, fmt.Errorf("%s ring: region of %d bytes, need %d: %w", what, len(mem), need, ErrInvalidOption)
	}
	if !aligned(mem, off.Producer, 4) || !aligned(mem, off.Consumer, 4) || !aligned(mem, off.Flags, 4) || !aligned(mem, off.Desc, 8) {
		return ringWords{}, fmt.Errorf("%s ring: misaligned offsets %+v: %w", what, off, ErrInvalidOption)
	}
	return ringWords{
		producer: u32At(mem, off.Producer),
		consumer: u32At(mem, off.Consumer),
		flags:    u32At(mem, off.Flags),
		size:     size,
		mask:     size - 1,
		mem:      mem,
	}, nil
}

// needWakeup reports XDP_RING_NEED_WAKEUP in the ring's flags.
func (w *ringWords) needWakeup() bool {
	return atomic.LoadUint32(w.flags)&unix.XDP_RING_NEED_WAKEUP != 0
}

// prodIndex is the producer side of a ring: this process writes entries and
// publishes them by storing the producer index; the other side (kernel or
// fake) consumes them and stores the consumer index.
//
// Indices are free-running uint32s, masked only when an entry is accessed;
// every difference is computed in unsigned arithmetic, so wrapping past 2^32
// needs no special case.
type prodIndex struct {
	ringWords
	reserved   uint32 // next index to hand out by reserve
	published  uint32 // value last stored to *producer
	cachedCons uint32 // last consumer index read; reloaded only when short of room
}

func newProdIndex(w ringWords) prodIndex {
	p := prodIndex{ringWords: w}
	p.published = atomic.LoadUint32(w.producer)
	p.reserved = p.published
	p.cachedCons = atomic.LoadUint32(w.consumer)
	p.base = p.published
	return p
}

// free is the room left according to the cached consumer index.
func (p *prodIndex) free() uint32 { return p.cachedCons + p.size - p.reserved }

func (p *prodIndex) reserve(n uint32) (got, idx uint32) {
	free := p.free()
	if free < n {
		p.cachedCons = atomic.LoadUint32(p.consumer)
		free = p.free()
	}
	got = min(n, free)
	idx = p.reserved
	p.reserved += got
	return got, idx
}

func (p *prodIndex) cancel(n uint32) {
	if n > p.reserved-p.published {
		panic("xsk: cancel of more entries than reserved")
	}
	p.reserved -= n
}

func (p *prodIndex) submit(n uint32) {
	if n > p.reserved-p.published {
		panic("xsk: submit of more entries than reserved")
	}
	p.published += n
	// The store publishes the entries written before it (Go atomics are
	// sequentially consistent: a release for the consumer's load).
	atomic.StoreUint32(p.producer, p.published)
}

// consIndex is the consumer side of a ring: the other side writes entries
// and stores the producer index; this process reads them and returns the
// slots by storing the consumer index.
type consIndex struct {
	ringWords
	consumed   uint32 // value last stored to *consumer
	cachedProd uint32 // last producer index read; reloaded only when the cache says empty
}

func newConsIndex(w ringWords) consIndex {
	c := consIndex{ringWords: w}
	c.consumed = atomic.LoadUint32(w.consumer)
	c.cachedProd = atomic.LoadUint32(w.producer)
	c.base = c.consumed
	return c
}

func (c *consIndex) peek(n uint32) (got, idx uint32) {
	avail := c.cachedProd - c.consumed
	if avail == 0 {
		// Acquire: entries below the loaded producer index are visible.
		c.cachedProd = atomic.LoadUint32(c.producer)
		avail = c.cachedProd - c.consumed
	}
	return min(n, avail), c.consumed
}

func (c *consIndex) release(n uint32) {
	if n > c.cachedProd-c.consumed {
		panic("xsk: release of more entries than peeked")
	}
	c.consumed += n
	atomic.StoreUint32(c.consumer, c.consumed)
}

// inRing is the number of entries between the consumer and producer words,
// read atomically (for accounting from another goroutine).
func (w *ringWords) inRing() uint32 {
	return atomic.LoadUint32(w.producer) - atomic.LoadUint32(w.consumer)
}

func (w *ringWords) loadProducer() uint32 { return atomic.LoadUint32(w.producer) }
func (w *ringWords) loadConsumer() uint32 { return atomic.LoadUint32(w.consumer) }
