package rules

import (
	"net/netip"

	"github.com/xdpipe/xdpipe/internal/frame"
)

// Reason says why a frame is malformed; the values are the steering
// program's counter indexes.
type Reason = frame.Reason

// The reasons, in the order of the steering program's counters.
const (
	ReasonNone         = frame.ReasonNone
	ReasonTruncEth     = frame.ReasonTruncEth     // shorter than an Ethernet header
	ReasonTruncVLAN    = frame.ReasonTruncVLAN    // a VLAN tag cut short
	ReasonTooManyVLANs = frame.ReasonTooManyVLANs // a third VLAN tag (802.1Q or 802.1ad)
	ReasonTruncIPv4    = frame.ReasonTruncIPv4    // IPv4 header (with options) cut short
	ReasonBadIHL       = frame.ReasonBadIHL       // IPv4 IHL below 5
	ReasonBadVersion   = frame.ReasonBadVersion   // IP version field disagrees with the EtherType
	ReasonTruncIPv6    = frame.ReasonTruncIPv6    // IPv6 fixed header cut short
	ReasonTruncExt     = frame.ReasonTruncExt     // an IPv6 extension header cut short
	ReasonTooManyExt   = frame.ReasonTooManyExt   // more than MaxExtHeaders IPv6 extension headers
	ReasonTruncL4      = frame.ReasonTruncL4      // UDP, TCP, ICMP or ICMPv6 header cut short
	NumReasons         = frame.NumReasons
)

const (
	// MaxVLANs is how many stacked VLAN tags a frame may carry.
	MaxVLANs = frame.MaxVLANs
	// MaxExtHeaders bounds the IPv6 extension header chain.
	MaxExtHeaders = frame.MaxExtHeaders
)

// Tuple is what matching looks at in a frame.
type Tuple struct {
	Ifindex   uint32
	HasVLAN   bool
	VLAN      uint16 // outermost tag's VLAN id
	EtherType uint16 // after the VLAN tags
	Family    uint8  // 4, 6, or 0 for non-IP
	Proto     uint8  // IP protocol / IPv6 upper-layer header (Family != 0)
	Src, Dst  netip.Addr
	HasPorts  bool // TCP or UDP, not a non-first fragment
	Sport     uint16
	Dport     uint16
}

// ParseFrame parses an Ethernet frame received on ifindex with xdpipe's
// one frame parser, which has the steering program's limits (up to
// MaxVLANs tags, MaxExtHeaders IPv6 extension headers, a full UDP, TCP or
// ICMP header). It returns the tuple, or the reason the frame is
// malformed. Frames of other EtherTypes than IPv4 and IPv6 are not
// malformed: they match on interface, VLAN and EtherType only.
func ParseFrame(b []byte, ifindex uint32) (Tuple, Reason) {
	var h frame.Headers
	r := frame.Parse(b, &h)
	return Tuple{
		Ifindex:   ifindex,
		HasVLAN:   h.VLANs > 0,
		VLAN:      h.VLAN & 0x0fff,
		EtherType: h.EtherType,
		Family:    h.Family,
		Proto:     h.Proto,
		Src:       h.Src,
		Dst:       h.Dst,
		HasPorts:  h.HasPorts,
		Sport:     h.SrcPort,
		Dport:     h.DstPort,
	}, r
}
