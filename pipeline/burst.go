package pipeline

import (
	"fmt"

	"github.com/xdpipe/xdpipe/xsk"
)

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

// Packet is a view of one received packet inside the UMEM. Nothing is
// copied: Data aliases UMEM memory and is valid only while the packet is in
// its burst; once the worker has sent or freed the frame the bytes belong to
// the kernel again, so a stage that keeps bytes beyond Process must copy
// them.
//
// A multi-buffer packet (a jumbo frame larger than one UMEM chunk) is one
// Packet too: Data is its first segment, which holds every header the
// stages parse, and More the descriptors of the rest. Len is the whole
// length; Burst.Segment and Burst.CopyPacket read the rest's bytes.
type Packet struct {
	// Data is the packet bytes (the first segment's, for a multi-buffer
	// packet), Frame[Off:Off+len(Data)]. Stages may edit them in place;
	// stages that change the length (VLAN push/pop) do it through Resize
	// so Addr, Off and Data stay consistent.
	Data []byte
	// More are a multi-buffer packet's segments after the first, in order,
	// as received (every one but the last flagged XDP_PKT_CONTD); nil for
	// a packet in one frame. Stages must not change them: the worker sends
	// and frees them with the first segment.
	More []Desc
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
	// runtime), read once per pass, not per packet; a spinning worker
	// that received nothing reads it one idle pass in 16, so it may be
	// that many idle passes old (under a microsecond).
	Time int64
	// RxTimestamp is the NIC's receive timestamp in nanoseconds of its
	// own clock, and RxHash its RSS hash of the packet, of type
	// RxHashType (the kernel's enum xdp_rss_hash_type), valid where
	// RxMeta says: set by a worker with WorkerConfig.RxMetadata from what
	// the XDP program bound to the interface read from the driver
	// (bpf.RedirectOptions.RxMetadataIfindex).
	RxTimestamp int64
	RxHash      uint32
	RxHashType  uint16
	RxMeta      RxMeta
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

// RxMeta says which of a Packet's driver RX metadata fields are set.
type RxMeta uint8

const (
	// RxHasHash: RxHash and RxHashType are the driver's.
	RxHasHash RxMeta = 1 << iota
	// RxHasTimestamp: RxTimestamp is the driver's.
	RxHasTimestamp
)

// Desc returns the descriptor to put on a TX ring for the packet (its first
// segment's: More follows it on the ring).
func (p *Packet) Desc() Desc { return Desc{Addr: p.Addr, Len: uint32(len(p.Data)), Options: p.Options} }

// Len is the packet's length: Data and every segment in More.
func (p *Packet) Len() int {
	n := len(p.Data)
	for i := range p.More {
		n += int(p.More[i].Len)
	}
	return n
}

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
	// Mem is the memory the packets are in (set by Load).
	Mem Memory
}

// CheckBurst refuses a burst size or TX batch (0: the default) outside
// 1..MaxBurstSize: NewBurst's and NewWorker's check, for a caller to ask
// before it maps or attaches anything.
func CheckBurst(size, txBatch int) error {
	if size < 0 || size > MaxBurstSize {
		return fmt.Errorf("burst size %d: want 1..%d", size, MaxBurstSize)
	}
	if txBatch < 0 || txBatch > MaxBurstSize {
		return fmt.Errorf("tx batch %d: want 1..%d", txBatch, MaxBurstSize)
	}
	return nil
}

// NewBurst allocates a burst of the given capacity (DefaultBurstSize if 0).
func NewBurst(capacity int) (*Burst, error) {
	if capacity == 0 {
		capacity = DefaultBurstSize
	}
	if err := CheckBurst(capacity, 0); err != nil {
		return nil, err
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
// port/queue), all with verdict VerdictKeep, one packet per chain of
// descriptors linked by XDP_PKT_CONTD. It appends: call Reset first for a
// new pass. Packets beyond the capacity are ignored: callers receive at most
// Cap() descriptors at a time. A chain cut short (its last descriptor still
// flagged, which a Port that keeps to xsk.Socket.Receive's contract never
// gives) is loaded as a dropped packet, so its frames are freed.
func (b *Burst) Load(mem Memory, port uint8, queue uint16, descs []Desc, now int64) {
	b.Time, b.Mem = now, mem
	for i := 0; i < len(descs); i++ {
		if len(b.Pkts) == cap(b.Pkts) {
			return
		}
		d := &descs[i]
		frame, off, end := view(mem, *d)
		b.Pkts = b.Pkts[:len(b.Pkts)+1]
		p := &b.Pkts[len(b.Pkts)-1]
		*p = Packet{
			Data: frame[off:end:len(frame)], Frame: frame, Addr: d.Addr, Options: d.Options, Off: off,
			Time: now, Queue: queue, Port: port, Rule: -1,
		}
		if d.Continues() {
			end, whole := xsk.PacketEnd(descs, i)
			if !whole {
				p.Verdict = VerdictDrop
			}
			p.More = descs[i+1 : end]
			i = end - 1
		}
	}
}

// Segment returns the bytes of d, one of a packet's segments in More. Like
// Data, they alias the UMEM for the duration of the pass.
func (b *Burst) Segment(d Desc) []byte {
	frame, off, end := view(b.Mem, d)
	return frame[off:end:end]
}

// view is the UMEM chunk holding d and d's bytes' offsets in it, clamped
// to the chunk: a broken descriptor is never read past it.
func view(mem Memory, d Desc) (frame []byte, off, end uint32) {
	frame = mem.Frame(d.Addr)
	off = uint32(d.Addr % uint64(len(frame)))
	return frame, off, uint32(min(uint64(off)+uint64(d.Len), uint64(len(frame))))
}

// CopyPacket copies the bytes of p, every segment in order, into dst and
// returns how many it copied (at most len(dst)).
func (b *Burst) CopyPacket(dst []byte, p *Packet) int {
	n := copy(dst, p.Data)
	for i := 0; i < len(p.More) && n < len(dst); i++ {
		n += copy(dst[n:], b.Segment(p.More[i]))
	}
	return n
}
