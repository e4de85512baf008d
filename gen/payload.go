package gen

import (
	"encoding/binary"

	"github.com/xdpipe/xdpipe/internal/frame"
)

// The payload every generated frame carries right after its L4 header:
//
//	offset 0  Magic, 4 bytes, big-endian
//	offset 4  sequence number, 8 bytes, little-endian, 0 for the first frame of a run
//	offset 12 send timestamp, 8 bytes, little-endian: CLOCK_MONOTONIC nanoseconds (internal/monotime)
//
// The rest of the frame up to its size is padding with byte i = i mod 256
// (offset from the start of the frame), so a receiver can check that a frame
// arrived whole (Template.Verify).
//
// The timestamp is CLOCK_MONOTONIC of the sending host (bpf_ktime_get_ns in
// the live engine, monotime.Now in the xsk engine). One-way latency computed
// from it is only meaningful when sender and receiver read the same clock:
// the same host, as on a veth testbed. Across hosts it is not comparable.
const (
	Magic      uint32 = 0x58445031 // "XDP1"
	PayloadLen int    = 20
)

// Payload is what a receiver learns from a generated frame.
type Payload struct {
	Seq  uint64
	Sent int64 // CLOCK_MONOTONIC ns at the sender
}

// Parse finds the generator payload in an Ethernet frame (IPv4 or IPv6,
// UDP or TCP, read by xdpipe's one frame parser: up to two VLAN tags, IPv6
// extension headers, the steering program's limits) and reports whether it
// carries Magic. It allocates nothing.
func Parse(b []byte) (Payload, bool) {
	var h frame.Headers
	if frame.Parse(b, &h) != frame.ReasonNone || !h.HasPorts {
		return Payload{}, false
	}
	off := int(h.L4) + frame.UDPLen
	if h.Proto == frame.ProtoTCP {
		// The parser checked the 20-byte fixed header; the data offset
		// says where the payload starts.
		doff := int(b[h.L4+12]>>4) * 4
		if doff < frame.TCPMinLen {
			return Payload{}, false
		}
		off = int(h.L4) + doff
	}
	if len(b) < off+PayloadLen || binary.BigEndian.Uint32(b[off:]) != Magic {
		return Payload{}, false
	}
	return Payload{
		Seq:  binary.LittleEndian.Uint64(b[off+4:]),
		Sent: int64(binary.LittleEndian.Uint64(b[off+12:])),
	}, true
}
