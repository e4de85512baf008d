package pipeline

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/xdpipe/xdpipe/internal/frame"
)

var (
	_ Stage   = (*Reflect)(nil)
	_ Metered = (*Reflect)(nil)
)

// Reflect sends each UDP packet back out of the port it came in on, to
// where it came from: Ethernet and IP addresses and UDP ports swapped
// (testpmd's 5-tuple swap). It is the echo end of a latency measurement.
//
// The UDP checksum stays valid through the swaps, which only reorder the
// words it sums. A checksum that holds only the pseudo-header's sum, as a
// veth hands over frames a local socket sent with checksum offload
// (CHECKSUM_PARTIAL), is completed over the whole datagram, so that the
// kernel on the other side accepts the reply. A packet with any other
// checksum is not answered, and neither is anything that is not UDP over
// IPv4 or IPv6 in one frame: steer only the reflected port to the socket.
//
// With Sockperf, the reply is what sockperf's server sends: the client
// flag of sockperf's header is cleared, and a message that asks for no
// reply (sockperf under-load sends most of them so) is absorbed.
type Reflect struct {
	Sockperf bool
	// Reflected counts the packets sent back; Absorbed the sockperf
	// messages that asked for no reply; Refused the packets not answered
	// (not UDP, a bad checksum, not a sockperf client's message).
	Reflected, Absorbed, Refused atomic.Uint64
}

// ReflectOptions are the reflect stage's options in a configuration file.
type ReflectOptions struct {
	// Sockperf answers as sockperf's server does.
	Sockperf bool `yaml:"sockperf"`
}

func newReflectStage(o *ReflectOptions, _ StageEnv) (Stage, error) {
	return &Reflect{Sockperf: o.Sockperf}, nil
}

// StageName implements Named.
func (*Reflect) StageName() string { return "reflect" }

// Counters implements Metered.
func (r *Reflect) Counters(emit func(d *CounterDesc, v uint64, labels ...string)) {
	emit(mStagePkts, r.Reflected.Load())
	emit(mStageLost, r.Refused.Load())
}

// sockperf's message header (its message.h): a 64-bit sequence number,
// 16 bits of flags, a 32-bit length, all in network order.
const (
	sockperfHeaderLen  = 14
	sockperfFlagsOff   = 8
	sockperfFlagClient = 1
	sockperfFlagPong   = 2
)

// Process implements Stage.
func (r *Reflect) Process(b *Burst) {
	var sent, absorbed, refused uint64
	for i := range b.Pkts {
		p := &b.Pkts[i]
		if p.Verdict == VerdictDrop {
			continue
		}
		switch r.reflect(p) {
		case reflected:
			p.Verdict = VerdictTransmit
			sent++
		case absorbedMsg:
			p.Verdict = VerdictDrop
			absorbed++
		default:
			p.Verdict = VerdictDrop
			refused++
		}
	}
	if sent != 0 {
		r.Reflected.Add(sent)
	}
	if absorbed != 0 {
		r.Absorbed.Add(absorbed)
	}
	if refused != 0 {
		r.Refused.Add(refused)
	}
}

// outcome is what reflect did with a packet.
type outcome uint8

const (
	refusedPkt  outcome = iota // not answered
	reflected                  // turned around, to send
	absorbedMsg                // a sockperf message that asks for no reply
)

// reflect turns one packet around, or says why not.
func (r *Reflect) reflect(p *Packet) outcome {
	var h frame.Headers
	d := p.Data
	if p.More != nil || frame.Parse(d, &h) != frame.ReasonNone || !h.HasPorts || h.Proto != frame.ProtoUDP {
		return refusedPkt
	}
	u := d[h.L4:]
	n := int(binary.BigEndian.Uint16(u[4:6]))
	if n < frame.UDPLen || n > len(u) {
		return refusedPkt
	}
	u = u[:n]
	ip := d[h.L3:h.L4]
	var src, dst []byte
	if h.Family == 4 {
		src, dst = ip[12:16], ip[16:20]
	} else {
		src, dst = ip[8:24], ip[24:40]
	}
	// Sums in native order (frame.Sum), the checksum field read and
	// written the same way.
	ne := binary.NativeEndian
	ph := [4]byte{0, frame.ProtoUDP, byte(n >> 8), byte(n)}
	pseudo := frame.Sum(src) + frame.Sum(dst) + frame.Sum(ph[:])
	check := ne.Uint16(u[6:8])
	full := h.Family == 4 && check == 0 // IPv4 without a checksum
	switch {
	case full:
	case frame.Fold(pseudo+frame.Sum(u)) == 0xffff:
		full = true
	case check != frame.Fold(pseudo):
		return refusedPkt // neither complete nor the pseudo-header's sum
	}
	if r.Sockperf {
		m := u[frame.UDPLen:]
		if len(m) < sockperfHeaderLen {
			return refusedPkt
		}
		flags := binary.BigEndian.Uint16(m[sockperfFlagsOff:])
		switch {
		case flags&sockperfFlagClient == 0:
			return refusedPkt
		case flags&sockperfFlagPong == 0:
			return absorbedMsg
		}
		old := ne.Uint16(m[sockperfFlagsOff:])
		binary.BigEndian.PutUint16(m[sockperfFlagsOff:], flags&^sockperfFlagClient)
		if full && check != 0 {
			ne.PutUint16(u[6:8], csumUpdate16(check, old, ne.Uint16(m[sockperfFlagsOff:])))
		}
	}
	if !full {
		// Complete the checksum over the datagram (after any edit).
		ne.PutUint16(u[6:8], 0)
		c := ^frame.Fold(pseudo + frame.Sum(u))
		if c == 0 {
			c = 0xffff
		}
		ne.PutUint16(u[6:8], c)
	}
	swapMACs(d)
	swapBytes(src, dst)
	u[0], u[1], u[2], u[3] = u[2], u[3], u[0], u[1]
	return reflected
}

// swapBytes swaps the contents of a and b, of equal length.
func swapBytes(a, b []byte) {
	for i := range a {
		a[i], b[i] = b[i], a[i]
	}
}
