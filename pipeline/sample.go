package pipeline

import (
	"cmp"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/xdpipe/xdpipe/internal/sat"
)

// Sampled is a copy of one sampled packet, handed to the slow path. Its
// buffer is preallocated and recycled: give it back with Sample.Release
// when done; Data is invalid after that.
type Sampled struct {
	Data   []byte // the first SnapLen bytes, copied out of the UMEM
	Length int    // the packet's full length
	Queue  uint16
	Time   int64 // CLOCK_MONOTONIC ns (internal/monotime); monotime.Wall converts
	buf    []byte
}

// Sample copies one packet in every N to a slow-path channel, never blocking
// the worker: when the slow path is behind (no free buffer), the sample is
// dropped and counted. Verdicts are not changed.
type Sample struct {
	n     uint32
	count uint32
	snap  int
	out   chan *Sampled
	free  chan *Sampled
	once  sync.Once
	// Sent counts samples delivered to the channel; Dropped the ones lost
	// because the slow path was behind.
	Sent, Dropped atomic.Uint64
}

var (
	_ Stage   = (*Sample)(nil)
	_ Metered = (*Sample)(nil)
)

// The sample stage's defaults: buffers, and bytes kept of each sample.
const defaultSampleDepth, defaultSampleSnap = 64, 256

// NewSample samples one packet in every n (n >= 1) into a channel of depth
// buffers (default 64) of snap bytes each (default 256).
func NewSample(n, depth, snap int) (*Sample, error) {
	if err := checkSample(n, depth, snap); err != nil {
		return nil, err
	}
	depth = cmp.Or(depth, defaultSampleDepth)
	snap = cmp.Or(snap, defaultSampleSnap)
	s := &Sample{n: uint32(n), snap: snap, out: make(chan *Sampled, depth), free: make(chan *Sampled, depth)}
	for i := 0; i < depth; i++ {
		s.free <- &Sampled{buf: make([]byte, snap)}
	}
	return s, nil
}

// StageName implements Named.
func (*Sample) StageName() string { return "sample" }

var (
	mSampleSent = NewCounterDesc("xdpipe_sample_sent_total", "Frames sampled to the slow path.")
	mSampleDrop = NewCounterDesc("xdpipe_sample_dropped_total", "Samples lost because the slow path was behind.")
)

// Counters implements Metered.
func (s *Sample) Counters(emit func(d *CounterDesc, v uint64, labels ...string)) {
	emit(mSampleSent, s.Sent.Load())
	emit(mSampleDrop, s.Dropped.Load())
}

// SampleOptions are the sample stage's options in a configuration file.
type SampleOptions struct {
	// Every samples one frame in every so many (default 1000); Depth and
	// SnapLen: NewSample's.
	Every   int `yaml:"every"`
	Depth   int `yaml:"depth"`
	SnapLen int `yaml:"snaplen"`
}

// MemoryCost implements Costly: the stage's depth slots (sampleSlot).
func (o *SampleOptions) MemoryCost() (uint64, string) {
	return sat.Mul(costOf(o.Depth, defaultSampleDepth), sampleSlot(costOf(o.SnapLen, defaultSampleSnap))), "depth × snaplen"
}

// sampleSlot is the bytes one of NewSample's depth slots takes: its
// Sampled and its buffer of snap bytes, each rounded up as the allocator
// rounds small objects, and its place in the out and free channels. A snap
// length beyond 2^62 counts as 2^62: no machine holds one slot of it.
func sampleSlot(snap uint64) uint64 {
	return (sampledSize+15)&^15 + (min(snap, 1<<62)+7)&^7 + 2*ptrSize
}

// checkSample checks NewSample's arguments.
func checkSample(n, depth, snap int) error {
	if n < 1 {
		return fmt.Errorf("sample: rate 1-in-%d: want n >= 1", n)
	}
	if depth < 0 || snap < 0 {
		return fmt.Errorf("sample: negative depth or snap length")
	}
	return nil
}

func newSampleStage(o *SampleOptions, env StageEnv) (Stage, error) {
	every := cmp.Or(o.Every, 1000)
	if env.CheckOnly {
		return nil, checkSample(every, o.Depth, o.SnapLen)
	}
	return NewSample(every, o.Depth, o.SnapLen)
}

// C is the slow-path channel. Close closes it: a slow path ranging over it
// ends once it drained the samples sent before.
func (s *Sample) C() <-chan *Sampled { return s.out }

// Close ends the slow path's channel. Call it once the stage no longer
// runs (CloseStages after Worker.SetStages, or after the worker stopped).
// Idempotent.
func (s *Sample) Close() error {
	s.once.Do(func() { close(s.out) })
	return nil
}

// Release recycles a sample's buffer.
func (s *Sample) Release(x *Sampled) {
	x.Data = nil
	select {
	case s.free <- x:
	default: // not ours or released twice: let it go
	}
}

// Process implements Stage.
func (s *Sample) Process(b *Burst) {
	var sent, dropped uint64
	for i := range b.Pkts {
		p := &b.Pkts[i]
		if p.Verdict == VerdictDrop {
			continue
		}
		s.count++
		if s.count < s.n {
			continue
		}
		s.count = 0
		select {
		case x := <-s.free:
			n := b.CopyPacket(x.buf, p)
			x.Data, x.Length, x.Queue, x.Time = x.buf[:n], p.Len(), p.Queue, p.Time
			s.out <- x // cannot block: there are as many buffers as channel slots
			sent++
		default:
			dropped++
		}
	}
	if sent != 0 {
		s.Sent.Add(sent)
	}
	if dropped != 0 {
		s.Dropped.Add(dropped)
	}
}
