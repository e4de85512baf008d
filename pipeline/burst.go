package pipeline

import "fmt"

// Verdict is what happens to a packet when its burst leaves the stages.
type Verdict uint8

const (
	// VerdictKeep: no decision yet. Later stages still see the packet; at the end
	// of the stages the worker applies its default verdict (VerdictDrop unless
	// configured otherwise).
	VerdictKeep Verdict = iota
	// VerdictDrop: the frame goes back to the UMEM free stack. Final: later stages
	// skip dropped packets.
	VerdictDrop
	// VerdictTransmit: out of the port the packet arrived on (l2fwd).
	VerdictTransmit
	// VerdictForward: out of the worker's output port Packet.Out (another
	// interface's AF_XDP socket sharing the UMEM, so no copy).
	VerdictForward
)

func (v Verdict) String() string {
	switch v {
	case VerdictKeep:
		return "keep"
	case VerdictDrop:
		return "drop"
	case VerdictTransmit:
		return "transmit"
	case VerdictForward:
		return "forward"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Packet is a view of one received frame inside the UMEM. Nothing is copied:
// Data aliases UMEM memory and is valid only while the packet is in its
// burst; once the worker has sent or freed the frame the bytes belong to the
// kernel again, so a stage that keeps bytes beyond Process must copy them.
type Packet struct {
	// Data is the packet bytes, Frame[Off:Off+len(Data)]. Stages may edit
	// them in place; stages that change the length (VLAN push/pop) do it
	// through Resize so Addr, Off and Data stay consistent.
	Data []byte
	// Frame is the whole UMEM chunk holding the packet (headroom before Off,
	// tailroom after Data).
	Frame []byte
	// Addr is the UMEM address of Data[0]: the descriptor address on RX and
	// the one put on a TX ring.
	Addr uint64
	// Options are the descriptor options (XDP_PKT_CONTD for multi-buffer).
	Options uint32
	// Off is the offset of Data[0] within Frame.
	Off uint32
	// Time is the pass time in nanoseconds (CLOCK_MONOTONIC via the Go
	// runtime), read once per pass, not per packet.
	Time int64
	// Queue is the RX queue the packet arrived on.
	Queue uint16
	// Port is the index of the worker port the packet arrived on.
	Port uint8
	// Out is the output port index for VerdictForward.
	Out uint8
	// Verdict is set by the stages.
	Verdict Verdict
	// Rule is the index of the filter rule that matched, or -1.
	Rule int16
}

// Desc returns the descriptor to put on a TX ring for the packet.
func (p *Packet) Desc() Desc { return Desc{Addr: p.Addr, Len: uint32(len(p.Data)), Options: p.Options} }

// Resize moves the start of the packet by head bytes (negative grows the
// packet into the headroom, positive trims the front) and sets its length to
// n. It reports false, leaving the packet unchanged, when the frame has no
// room.
func (p *Packet) Resize(head int, n int) bool {
	off := int(p.Off) + head
	if off < 0 || n < 0 || off+n > len(p.Frame) {
		return false
	}
	p.Off = uint32(off)
	p.Addr = uint64(int64(p.Addr) + int64(head))
	p.Data = p.Frame[off : off+n : len(p.Frame)]
	return true
}

// Memory is where frames live: the UMEM. *xsk.Umem implements it; tests use a
// plain byte slice.
type Memory interface {
	// Frame returns the bytes of the UMEM chunk holding addr, from the chunk
	// start, valid until the UMEM is closed.
	Frame(addr uint64) []byte
	// Free returns frames to the free stack.
	Free(addrs []uint64)
}

// DefaultBurstSize is the burst capacity when none is configured, as DPDK's
// MAX_PKT_BURST (32) doubled for AF_XDP's cheaper descriptors.
const DefaultBurstSize = 64

// MaxBurstSize bounds a burst; it must also fit the RX ring.
const MaxBurstSize = 4096

// Burst is a fixed-capacity vector of packets, allocated once and reused for
// every pass. A burst belongs to one worker goroutine.
type Burst struct {
	// Pkts holds the packets of the current pass; len(Pkts) is the burst
	// length, cap(Pkts) its capacity. Stages must not append to it.
	Pkts []Packet
	// Descs is receive scratch of the same capacity, handed to the socket.
	Descs []Desc
	// Time is the pass time, copied into every packet.
	Time int64
}

// NewBurst allocates a burst of the given capacity (DefaultBurstSize if 0).
func NewBurst(capacity int) (*Burst, error) {
	if capacity == 0 {
		capacity = DefaultBurstSize
	}
	if capacity < 0 || capacity > MaxBurstSize {
		return nil, fmt.Errorf("burst size %d: want 1..%d", capacity, MaxBurstSize)
	}
	return &Burst{Pkts: make([]Packet, 0, capacity), Descs: make([]Desc, capacity)}, nil
}

// Len is the number of packets in the burst.
func (b *Burst) Len() int { return len(b.Pkts) }

// Cap is the burst capacity.
func (b *Burst) Cap() int { return cap(b.Pkts) }

// Reset empties the burst.
func (b *Burst) Reset() { b.Pkts = b.Pkts[:0] }

// Load fills the burst with views of descs[:n] (the frames just received on
// port/queue), all with verdict VerdictKeep. It appends: call Reset first for a new
// pass. Descriptors beyond the capacity are ignored: callers receive at most
// Cap() at a time.
func (b *Burst) Load(mem Memory, port uint8, queue uint16, descs []Desc, now int64) {
	b.Time = now
	for i := range descs {
		if len(b.Pkts) == cap(b.Pkts) {
			return
		}
		d := &descs[i]
		frame := mem.Frame(d.Addr)
		off := uint32(d.Addr % uint64(len(frame)))
		end := off + d.Len
		if end > uint32(len(frame)) { // a broken descriptor: clamp, never read past the chunk
			end = uint32(len(frame))
		}
		b.Pkts = b.Pkts[:len(b.Pkts)+1]
		p := &b.Pkts[len(b.Pkts)-1]
		*p = Packet{
			Data: frame[off:end:len(frame)], Frame: frame, Addr: d.Addr, Options: d.Options, Off: off,
			Time: now, Queue: queue, Port: port, Rule: -1,
		}
	}
}
