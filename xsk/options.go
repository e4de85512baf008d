package xsk

import (
	"fmt"
	"time"
)

// Defaults used for zero fields of the options structs.
const (
	DefaultNumFrames = 4096
	DefaultFrameSize = 4096
	DefaultRingSize  = 2048
	maxNumFrames     = 1 << 24
	// xdpPacketHeadroom is XDP_PACKET_HEADROOM: the kernel keeps this many
	// bytes in front of a received frame's data, after the UMEM headroom.
	xdpPacketHeadroom = 256
	// minFrameData is the least room a frame must keep for packet data.
	minFrameData = 128
)

// FrameData is how many bytes of a received packet fit in one UMEM frame of
// frameSize bytes (0: the default) without UMEM headroom: what the kernel
// leaves after XDP_PACKET_HEADROOM. A larger packet needs multi-buffer
// (SocketOptions.MultiBuffer), or the kernel drops it.
func FrameData(frameSize uint32) int {
	if frameSize == 0 {
		frameSize = DefaultFrameSize
	}
	return int(frameSize) - xdpPacketHeadroom
}

// Segments is how many UMEM frames of frameSize (0: the default) the
// largest packet of an interface with this MTU takes, its Ethernet header
// included: 1 when it fits one frame, more with multi-buffer.
func Segments(mtu int, frameSize uint32) int {
	room := FrameData(frameSize)
	return max((mtu+ethHeader+room-1)/room, 1)
}

// UmemOptions configure NewUmem. The zero value works: 4096 frames of 4096
// bytes, no headroom, fill and completion rings of 2048 entries.
type UmemOptions struct {
	// NumFrames is the number of frames (default 4096; at most 2^24).
	NumFrames uint32
	// FrameSize is the size of a frame in bytes: 2048 or 4096 (default).
	FrameSize uint32
	// Headroom is the space the kernel leaves free at the start of each
	// frame before XDP_PACKET_HEADROOM (256) and the packet data (default
	// 0). Received data starts at frame+Headroom+256; it must leave at
	// least 128 bytes of the frame for data.
	Headroom uint32
	// FillSize and CompletionSize are the entry counts of the fill and
	// completion rings of each socket on this UMEM: powers of two
	// (default 2048).
	FillSize, CompletionSize uint32
	// HugePages backs the UMEM with huge pages (MAP_HUGETLB), falling back
	// to normal pages when none are available; Umem.HugePages reports
	// which it got.
	HugePages bool
	// Debug keeps a per-frame bitmap of the free stack and panics on a
	// double free, on an address outside the UMEM, and when a frame that
	// is on the free stack is received, recycled or transmitted (a frame
	// in two places). It costs a lock per burst: for tests and debugging.
	Debug bool
}

// withDefaults is o with its zero sizes set to the defaults.
func (o UmemOptions) withDefaults() UmemOptions {
	if o.NumFrames == 0 {
		o.NumFrames = DefaultNumFrames
	}
	if o.FrameSize == 0 {
		o.FrameSize = DefaultFrameSize
	}
	if o.FillSize == 0 {
		o.FillSize = DefaultRingSize
	}
	if o.CompletionSize == 0 {
		o.CompletionSize = DefaultRingSize
	}
	return o
}

func (o UmemOptions) resolve() (UmemOptions, error) {
	o = o.withDefaults()
	if err := CheckFrameSize(o.FrameSize); err != nil {
		return o, fmt.Errorf("umem options: %w", err)
	}
	switch {
	case o.NumFrames > maxNumFrames:
		return o, invalid("umem options: %d frames: at most %d", o.NumFrames, maxNumFrames)
	case o.Headroom+xdpPacketHeadroom+minFrameData > o.FrameSize:
		return o, invalid("umem options: headroom %d leaves no room in a %d-byte frame (headroom + 256 + 128 must fit)", o.Headroom, o.FrameSize)
	}
	if err := CheckRingSize(uint64(o.FillSize)); err != nil {
		return o, fmt.Errorf("umem options: fill %w", err)
	}
	if err := CheckRingSize(uint64(o.CompletionSize)); err != nil {
		return o, fmt.Errorf("umem options: completion %w", err)
	}
	return o, nil
}

// CheckFrameSize refuses a UMEM frame size other than 2048 and 4096 bytes
// (0: the default, 4096).
func CheckFrameSize(n uint32) error {
	if n != 0 && n != 2048 && n != 4096 {
		return invalid("frame size %d: must be 2048 or 4096", n)
	}
	return nil
}

// MaxRingSize is the largest ring CheckRingSize accepts: the largest
// power of two a uint32 entry count holds.
const MaxRingSize = 1 << 31

// CheckRingSize refuses a ring size (a count of entries) that is not a
// power of two from 1 to 2^31. NewUmem and NewSocket check their options'
// ring sizes with it; a command or configuration checks a size it was
// given with it too, before the cost of the rings is worked out. It takes
// a uint64 so that a size from a wider setting is checked before any
// conversion could cut it down to a power of two.
func CheckRingSize(n uint64) error {
	if n == 0 || n > MaxRingSize || n&(n-1) != 0 {
		return invalid("ring size %d: must be a power of two from 1 to %d", n, uint64(MaxRingSize))
	}
	return nil
}

// BindMode is how a socket binds to its queue.
type BindMode int

const (
	// BindAuto tries zero-copy and falls back to copy mode; Socket.Mode
	// reports which it got and Socket.Fallback why.
	BindAuto BindMode = iota
	// BindCopy forces copy mode (XDP_COPY): works on every interface.
	BindCopy
	// BindZeroCopy forces zero-copy (XDP_ZEROCOPY): fails with
	// ErrNotSupported where the driver cannot (veth, for one).
	BindZeroCopy
)

func (m BindMode) String() string {
	switch m {
	case BindAuto:
		return "auto"
	case BindCopy:
		return "copy"
	case BindZeroCopy:
		return "zerocopy"
	}
	return "BindMode(?)"
}

// ParseBindMode parses auto (or empty), copy and zerocopy (or zero-copy,
// zc), the names String gives.
func ParseBindMode(s string) (BindMode, error) {
	switch s {
	case "auto", "":
		return BindAuto, nil
	case "copy":
		return BindCopy, nil
	case "zerocopy", "zero-copy", "zc":
		return BindZeroCopy, nil
	}
	return 0, fmt.Errorf("unknown bind mode %q (want copy, zerocopy or auto)", s)
}

// SocketOptions configure NewSocket. The zero value works: RX and TX rings
// of 2048 entries, auto bind mode, need_wakeup on, no multi-buffer, no busy
// polling.
type SocketOptions struct {
	// RXSize and TXSize are the entry counts of the RX and TX rings:
	// powers of two (default 2048).
	RXSize, TXSize uint32
	// Bind chooses copy, zero-copy or auto (default). A socket sharing the
	// UMEM of an earlier one inherits that socket's mode: Bind must be
	// BindAuto or the same mode.
	Bind BindMode
	// NoNeedWakeup turns XDP_USE_NEED_WAKEUP off: the kernel then never
	// sleeps on the rings and the socket kicks it on every Transmit and
	// Refill. Leave it off unless the driver misbehaves. Inherited by
	// sockets sharing the UMEM.
	NoNeedWakeup bool
	// MultiBuffer sets XDP_USE_SG: packets larger than a frame arrive and
	// leave as several descriptors chained with XDP_PKT_CONTD (see
	// ReceivePacket and TransmitPacket). Inherited by sockets sharing the
	// UMEM.
	MultiBuffer bool
	// BusyPoll sets SO_PREFER_BUSY_POLL, SO_BUSY_POLL (BusyPollTimeout,
	// default 20µs) and SO_BUSY_POLL_BUDGET (BusyPollBudget, default 64),
	// and makes Refill and Transmit kick the kernel on every call, which
	// is what drives the busy poll. Larger timeouts than the
	// net.core.busy_poll sysctl need CAP_NET_ADMIN.
	BusyPoll        bool
	BusyPollTimeout time.Duration
	BusyPollBudget  int
	// Prefill puts free frames of the UMEM on the fill ring before the
	// socket binds, as many as fit and are free (what Refill does after):
	// set it on a socket that receives. A zero-copy driver fills its RX
	// queue from the fill ring when the socket binds; one that finds the
	// ring empty may not look again, and then nothing arrives (virtio-net:
	// an RX queue without buffers gets no frame, so no interrupt and no
	// refill, and its wakeup schedules only TX). Leave it off on sockets
	// that only transmit: it would take the UMEM's frames.
	Prefill bool
	// FillLow lets Refill keep as few as this many frames on the fill ring
	// while the kernel takes few between two refills (0, or the ring's
	// size or more: the whole ring, always). The kernel writes into the
	// frames on the fill ring in turn: a shallow ring keeps them in the
	// caches and the TLB and cuts a lone packet's latency, but a receiver
	// that stalls loses what arrives beyond it. Refill starts with the
	// whole ring, halves the depth after each quarter of a second in
	// which the kernel never took more than a quarter of it between two
	// refills, and doubles it again, up to the ring, whenever the kernel
	// took more than half. For receivers that refill often (spin); one
	// that naps while frames come needs the whole ring.
	FillLow uint32
	// Driver is what is known of the interface's driver (package netdev
	// reads it; zero: unknown). With it, BindZeroCopy is refused before
	// any bind where the driver cannot do zero-copy or the MTU needs more
	// segments than its zero-copy takes, BindAuto goes to copy mode for
	// the same reasons (Socket.Fallback says which), and a queue beyond
	// the active count fails naming the count.
	Driver Driver
}

// withDefaults is o with its zero ring sizes set to the default.
func (o SocketOptions) withDefaults() SocketOptions {
	if o.RXSize == 0 {
		o.RXSize = DefaultRingSize
	}
	if o.TXSize == 0 {
		o.TXSize = DefaultRingSize
	}
	return o
}

func (o SocketOptions) resolve() (SocketOptions, error) {
	o = o.withDefaults()
	if o.BusyPoll {
		if o.BusyPollTimeout == 0 {
			o.BusyPollTimeout = 20 * time.Microsecond
		}
		if o.BusyPollBudget == 0 {
			o.BusyPollBudget = 64
		}
	}
	if err := CheckRingSize(uint64(o.RXSize)); err != nil {
		return o, fmt.Errorf("socket options: rx %w", err)
	}
	if err := CheckRingSize(uint64(o.TXSize)); err != nil {
		return o, fmt.Errorf("socket options: tx %w", err)
	}
	switch {
	case o.Bind < BindAuto || o.Bind > BindZeroCopy:
		return o, invalid("socket options: unknown bind mode %d", int(o.Bind))
	case o.BusyPollTimeout < 0 || o.BusyPollTimeout > time.Second:
		return o, invalid("socket options: busy poll timeout %v: must be in [0, 1s]", o.BusyPollTimeout)
	case o.BusyPollBudget < 0 || o.BusyPollBudget > 65535:
		return o, invalid("socket options: busy poll budget %d: must be in [0, 65535]", o.BusyPollBudget)
	}
	return o, nil
}
