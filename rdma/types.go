package rdma

import (
	"errors"
	"time"
)

var (
	// ErrNotSupported is returned by every entry point in builds without
	// the `rdma` tag.
	ErrNotSupported = errors.New("rdma: not supported (build with -tags rdma and rdma-core installed)")
	// ErrNoDevice means the machine has no RDMA device (no rxe link, no HCA).
	ErrNoDevice = errors.New("rdma: no RDMA device")
	// ErrUnreachable means the peer's address or route could not be
	// resolved, or it did not answer the connection request.
	ErrUnreachable = errors.New("rdma: peer unreachable")
	// ErrRefused means the peer rejected the connection: nothing listens on
	// the port, or the sink refused it (the reason follows in the message).
	ErrRefused = errors.New("rdma: connection refused")
	// ErrDisconnected means the connection ended: the peer closed it, went
	// away, or a work request failed.
	ErrDisconnected = errors.New("rdma: disconnected")
	// ErrTooLarge means a packet is longer than the sink's receive buffers
	// or lies outside the registered region. Nothing was posted for it.
	ErrTooLarge = errors.New("rdma: message too large")
	// ErrBufferSize means the sender's packets are longer than the sink's
	// receive buffers (ListenOptions.BufferSize): the sink refused the
	// connection (ErrRefused), or Send a packet (ErrTooLarge). errors.Is
	// finds it beside those; the sink's buffers must grow.
	ErrBufferSize = errors.New("rdma: packets longer than the sink's receive buffers")
	// ErrTimeout means a bounded wait (set-up, drain, close) ran out.
	ErrTimeout = errors.New("rdma: timed out")
	// ErrClosed means the object was closed.
	ErrClosed = errors.New("rdma: closed")
)

// bufferSizeError is err, a refusal whose cause is the sink's buffer size:
// errors.Is finds ErrBufferSize in it as well as err's chain, and its text
// is err's.
type bufferSizeError struct{ error }

func (e bufferSizeError) Unwrap() error { return e.error }

func (e bufferSizeError) Is(target error) bool { return target == ErrBufferSize }

// Desc is one packet, or one segment of a packet, inside the sender's
// registered region: Addr is the byte offset of its first byte from the
// start of the region (for an AF_XDP UMEM that is exactly xsk.Desc.Addr)
// and Len its length. A packet of several segments (a multi-buffer AF_XDP
// packet) is several Desc in a row, every one but the last flagged More,
// and travels as one message (one send, one scatter-gather entry per
// segment), as XDP_PKT_CONTD chains them on the AF_XDP rings.
type Desc struct {
	Addr  uint64
	Len   uint32
	Flags uint32 // More; layout shared with C (struct xd_desc)
}

// More in Desc.Flags says the packet continues in the next Desc.
const More uint32 = 1

// Continues reports whether the packet goes on in the next Desc (More):
// with it, xsk's PacketEnd, WholePackets and Packets walk rdma's
// descriptors as they walk the UMEM's.
func (d Desc) Continues() bool { return d.Flags&More != 0 }

// Device is an RDMA device found by Devices.
type Device struct {
	Name  string // e.g. rxe0, mlx5_0
	GUID  string // node GUID
	Ports []Port
	// MaxQPWR is the device's largest work queue; MaxSGE its most
	// scatter-gather entries per work request.
	MaxQPWR, MaxSGE int
}

// Port is one port of a Device.
type Port struct {
	Num       int
	State     string // "ACTIVE", "DOWN", ...
	ActiveMTU int    // bytes: 256..4096
	LinkLayer string // "Ethernet" (RoCE) or "InfiniBand"
}

// DialOptions configure a Sender. The zero value works.
type DialOptions struct {
	// Source is the local IP address to connect from, which picks the RDMA
	// device (default: the one routing chooses for the destination). With
	// both ends of a test bed on one host, routing picks the destination's
	// own address, so set it.
	Source string
	// Timeout bounds address and route resolution and connection set-up
	// together (default 10s).
	Timeout time.Duration
	// SendQueue is the most packets in flight (default 512): the send
	// queue and the in-flight ring hold SendQueue*MaxSegments segments,
	// rounded up to a power of two.
	SendQueue int
	// Chain is the most work requests per ibv_post_send (1..64, default
	// 64). On SoftRoCE each ibv_post_send is a system call that runs the
	// rxe pipeline: longer chains, fewer calls.
	Chain int
	// SignalEvery asks for a completion every that many sends besides the
	// last of each chain (default SendQueue/2), so frames come back
	// while a long burst is still in flight.
	SignalEvery int
	// AckTimeout is the RC ack timeout exponent: 4.096us * 2^AckTimeout per
	// try, 7 tries before a send fails (default 16: ~0.27s, ~2s in all).
	AckTimeout int
	// MaxSegments is the most Desc one packet may have (scatter-gather
	// entries per send; default 1, at most 64). Dial fails if the device
	// takes fewer (its max_sge).
	MaxSegments int
	// MaxMessage, if set, is the longest packet this sender will send:
	// it goes to the sink in the connection request, and a sink whose
	// receive buffers are smaller refuses the connection (saying so),
	// rather than every such packet failing Send later.
	MaxMessage int
}

// ListenOptions configure a Listener and the Receivers it accepts. The zero
// value works.
type ListenOptions struct {
	// Buffers is how many receive buffers each connection keeps posted:
	// the sender's credits, one of them kept for its FIN (default 512,
	// at least 2).
	Buffers int
	// BufferSize is the size of each receive buffer, the largest packet a
	// sender may send (default 2048, room for a 1500-byte MTU frame; a
	// 9000-byte MTU needs 9018 with a VLAN tag). A sender that announces
	// a larger DialOptions.MaxMessage is refused.
	BufferSize int
	// Backlog is the listen backlog (default 16).
	Backlog int
	// Accept, if set, is asked about every connection request with the
	// peer's address; a non-nil error refuses the connection and its text
	// is sent to the peer (first 100 bytes) as the reason.
	Accept func(remote string) error
	// Timeout bounds the set-up of one accepted connection (default 10s).
	Timeout time.Duration
}

// SenderStats are a Sender's counters.
type SenderStats struct {
	Sent      uint64 // packets (messages) posted
	Segments  uint64 // Desc posted: Sent plus the further segments
	Completed uint64 // Desc handed back by Completed
	Bytes     uint64 // bytes posted
	Stalls    uint64 // Send calls that could post nothing for lack of credits
	QueueFull uint64 // Send calls that could post nothing: send queue full
	Credits   int    // credits held now
}

// ReceiverStats are a Receiver's counters.
type ReceiverStats struct {
	Received        uint64 // packets returned by Receive
	Bytes           uint64
	CreditMessages  uint64 // credit updates sent to the peer
	CreditsReturned uint64
}

// SeqObserver checks the sequence numbers of generated frames at the sink;
// *gen.Tracker satisfies it. now is CLOCK_MONOTONIC nanoseconds, read once
// per burst.
type SeqObserver interface {
	Observe(frame []byte, now int64) bool
}
