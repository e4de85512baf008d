package pipeline

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/xdpipe/xdpipe/internal/frame"
)

// Compile-time checks that the built-in stages are Stages.
var (
	_ Stage        = (*Count)(nil)
	_ Stage        = (*Drop)(nil)
	_ Stage        = (*MacSwap)(nil)
	_ Stage        = (*Forward)(nil)
	_ OutputBinder = (*Forward)(nil)
	_ Metered      = (*Count)(nil)
)

// Count counts the packets and bytes that reach it (dropped ones excluded).
// The counters are updated once per burst and may be read from any goroutine.
type Count struct {
	Packets atomic.Uint64
	Bytes   atomic.Uint64
}

// StageName implements Named.
func (*Count) StageName() string { return "count" }

// Counters implements Metered.
func (c *Count) Counters(emit func(d *CounterDesc, v uint64, labels ...string)) {
	emit(mStagePkts, c.Packets.Load())
}

// Process implements Stage.
func (c *Count) Process(b *Burst) {
	var n, bytes uint64
	for i := range b.Pkts {
		p := &b.Pkts[i]
		if p.Verdict == VerdictDrop {
			continue
		}
		n++
		bytes += uint64(p.Len())
	}
	if n != 0 {
		c.Packets.Add(n)
		c.Bytes.Add(bytes)
	}
}

// Drop drops every packet (the rxdrop benchmark shape).
type Drop struct{}

// StageName implements Named.
func (*Drop) StageName() string { return "drop" }

// Process implements Stage.
func (*Drop) Process(b *Burst) {
	for i := range b.Pkts {
		b.Pkts[i].Verdict = VerdictDrop
	}
}

// MacSwap swaps the Ethernet source and destination addresses and sends the
// frame back out of the port it came in on: DPDK l2fwd's macswap mode.
// Frames shorter than an Ethernet header are dropped.
type MacSwap struct{}

// StageName implements Named.
func (*MacSwap) StageName() string { return "macswap" }

// Process implements Stage.
func (*MacSwap) Process(b *Burst) {
	for i := range b.Pkts {
		p := &b.Pkts[i]
		if p.Verdict == VerdictDrop {
			continue
		}
		if len(p.Data) < frame.EthLen {
			p.Verdict = VerdictDrop
			continue
		}
		swapMACs(p.Data)
		p.Verdict = VerdictTransmit
	}
}

// swapMACs swaps the destination and source addresses of the Ethernet
// header at the start of d (at least 12 bytes): four loads, four stores,
// no call to memmove for 6-byte copies.
func swapMACs(d []byte) {
	d = d[:12:12]
	dst0, dst1 := binary.LittleEndian.Uint32(d[0:4]), binary.LittleEndian.Uint16(d[4:6])
	src0, src1 := binary.LittleEndian.Uint32(d[6:10]), binary.LittleEndian.Uint16(d[10:12])
	binary.LittleEndian.PutUint32(d[0:4], src0)
	binary.LittleEndian.PutUint16(d[4:6], src1)
	binary.LittleEndian.PutUint32(d[6:10], dst0)
	binary.LittleEndian.PutUint16(d[10:12], dst1)
}

// Forward sends every live packet out of the named output port: another
// interface's AF_XDP socket on the same queue, sharing the UMEM, so the
// frame is not copied.
type Forward struct {
	// To names the output (an interface name).
	To  string
	out uint8
	ok  bool
}

// StageName implements Named.
func (*Forward) StageName() string { return "forward" }

// ForwardOptions are the forward stage's options.
type ForwardOptions struct {
	// To names the output: one of the worker's ports (an interface).
	To string `yaml:"to"`
}

func newForwardStage(o *ForwardOptions, env StageEnv) (Stage, error) {
	if !slices.Contains(env.Ports, o.To) {
		return nil, fmt.Errorf("output %q is not one of the interfaces %v", o.To, env.Ports)
	}
	return &Forward{To: o.To}, nil
}

// BindOutputs implements OutputBinder.
func (f *Forward) BindOutputs(lookup func(string) (int, bool)) error {
	i, ok := lookup(f.To)
	if !ok {
		return fmt.Errorf("forward: no output %q", f.To)
	}
	if i < 0 || i > 255 {
		return fmt.Errorf("forward: output index %d out of range", i)
	}
	f.out, f.ok = uint8(i), true
	return nil
}

// Process implements Stage. Unbound, it drops (a wiring bug, counted by the
// worker as dropped frames rather than sent to a wrong port).
func (f *Forward) Process(b *Burst) {
	v := VerdictForward
	if !f.ok {
		v = VerdictDrop
	}
	for i := range b.Pkts {
		p := &b.Pkts[i]
		if p.Verdict == VerdictDrop {
			continue
		}
		p.Verdict, p.Out = v, f.out
	}
}
