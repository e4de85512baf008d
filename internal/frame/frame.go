// Package frame is xdpipe's one Ethernet frame parser, with the limits of
// the XDP steering program (bpf/steer.c), so that the rules' reference
// matcher, the pipeline's filter and the generator's receiver read a frame
// exactly as the kernel side does. It allocates nothing, on good and on
// malformed frames.
package frame

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// EtherTypes and IP protocols the parser knows.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeIPv6 = 0x86dd
	EtherTypeVLAN = 0x8100 // 802.1Q
	EtherTypeQinQ = 0x88a8 // 802.1ad
	ProtoICMP     = 1
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoICMPv6   = 58
)

// Header lengths.
const (
	EthLen     = 14
	VLANLen    = 4
	IPv4MinLen = 20
	IPv6Len    = 40
	UDPLen     = 8
	TCPMinLen  = 20
	ICMPLen    = 8
)

// Limits, bpf/parse.h's MAX_VLANS and MAX_EXT_HDRS (the steering program's parser).
const (
	// MaxVLANs is how many stacked VLAN tags a frame may carry.
	MaxVLANs = 2
	// MaxExtHeaders bounds the IPv6 extension header chain.
	MaxExtHeaders = 6
)

// Reason says why a frame is malformed. The values are the steering
// program's counter indexes (bpf/parse.h's enum stat).
type Reason uint8

// The reasons.
const (
	ReasonNone         Reason = iota
	ReasonTruncEth            // shorter than an Ethernet header
	ReasonTruncVLAN           // a VLAN tag cut short
	ReasonTooManyVLANs        // a third VLAN tag (802.1Q or 802.1ad)
	ReasonTruncIPv4           // IPv4 header (with options) cut short
	ReasonBadIHL              // IPv4 IHL below 5
	ReasonBadVersion          // IP version field disagrees with the EtherType
	ReasonTruncIPv6           // IPv6 fixed header cut short
	ReasonTruncExt            // an IPv6 extension header cut short
	ReasonTooManyExt          // more than MaxExtHeaders IPv6 extension headers
	ReasonTruncL4             // UDP, TCP, ICMP or ICMPv6 header cut short
	NumReasons
)

var reasonNames = [...]string{"none", "truncated-ethernet", "truncated-vlan", "too-many-vlans", "truncated-ipv4",
	"bad-ihl", "bad-ip-version", "truncated-ipv6", "truncated-ext-header", "too-many-ext-headers", "truncated-l4"}

// String returns a short name such as truncated-ipv4.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// Truncated reports whether r says the frame was cut short (rather than
// holding a field no valid frame has).
func (r Reason) Truncated() bool {
	switch r {
	case ReasonTruncEth, ReasonTruncVLAN, ReasonTruncIPv4, ReasonTruncIPv6, ReasonTruncExt, ReasonTruncL4:
		return true
	}
	return false
}

// Headers are the parsed header fields of one frame: offsets into it and
// the fields rules match on. It holds no pointer into the frame.
type Headers struct {
	VLANs     uint8  // VLAN tags (0..MaxVLANs)
	VLAN      uint16 // outermost tag's TCI (PCP, DEI, VID), if VLANs > 0
	EtherType uint16 // after the VLAN tags
	Family    uint8  // 4, 6, or 0 for non-IP
	Proto     uint8  // IP protocol / IPv6 upper-layer header (Family != 0)
	TTL       uint8  // IPv4 TTL or IPv6 hop limit
	TOS       uint8  // IPv4 TOS or IPv6 traffic class
	Fragment  bool   // a non-first fragment: its L4 header is not looked at
	HasPorts  bool   // TCP or UDP, not a non-first fragment
	L3        uint16 // offset of the IP header, 0 if none
	L4        uint16 // offset of the upper-layer header, 0 if none (non-IP, non-first fragment)
	Src, Dst  netip.Addr
	SrcPort   uint16 // TCP/UDP ports, if HasPorts
	DstPort   uint16
}

// Parse fills h from the Ethernet frame b and returns ReasonNone, or the
// reason the frame is malformed (h then holds what was parsed before the
// fault). The rules are the steering program's:
//
//   - Up to MaxVLANs 802.1Q/802.1ad tags; one more is ReasonTooManyVLANs.
//   - IPv4: version 4, IHL >= 5, the header with its options present. The
//     total length field is not checked. A non-first fragment (offset != 0)
//     has no ports and its L4 header is not looked at.
//   - IPv6: version 6, then up to MaxExtHeaders of hop-by-hop, routing,
//     fragment and destination options headers, each present in full; a
//     longer chain is ReasonTooManyExt. A fragment header with a non-zero
//     offset ends parsing: the protocol is its next header, no ports. Other
//     headers (AH, ESP, no next header...) are the upper-layer protocol.
//   - L4: UDP needs 8 bytes, TCP 20 (its data offset is not checked), ICMP
//     (in IPv4) and ICMPv6 (in IPv6) 8.
//
// Frames of other EtherTypes are not malformed: only the Ethernet and VLAN
// fields are set.
func Parse(b []byte, h *Headers) Reason {
	*h = Headers{}
	if len(b) < EthLen {
		return ReasonTruncEth
	}
	et := binary.BigEndian.Uint16(b[12:14])
	p := EthLen
	if et == EtherTypeVLAN || et == EtherTypeQinQ {
		var r Reason
		if p, et, r = vlans(b, h); r != ReasonNone {
			return r
		}
	}
	h.EtherType = et
	switch et {
	case EtherTypeIPv4:
		if len(b) < p+IPv4MinLen {
			return ReasonTruncIPv4
		}
		ip := b[p : p+IPv4MinLen]
		if ip[0]>>4 != 4 {
			return ReasonBadVersion
		}
		hl := int(ip[0]&0x0f) * 4
		if hl < IPv4MinLen {
			return ReasonBadIHL
		}
		if p+hl > len(b) {
			return ReasonTruncIPv4
		}
		h.Family, h.L3 = 4, uint16(p)
		h.TOS, h.TTL, h.Proto = ip[1], ip[8], ip[9]
		h.Src = netip.AddrFrom4([4]byte(ip[12:16]))
		h.Dst = netip.AddrFrom4([4]byte(ip[16:20]))
		if binary.BigEndian.Uint16(ip[6:8])&0x1fff != 0 {
			h.Fragment = true
			return ReasonNone
		}
		p += hl
	case EtherTypeIPv6:
		if len(b) < p+IPv6Len {
			return ReasonTruncIPv6
		}
		ip := b[p : p+IPv6Len]
		if ip[0]>>4 != 6 {
			return ReasonBadVersion
		}
		h.Family, h.L3 = 6, uint16(p)
		h.TOS, h.TTL = ip[0]<<4|ip[1]>>4, ip[7]
		h.Src = netip.AddrFrom16([16]byte(ip[8:24]))
		h.Dst = netip.AddrFrom16([16]byte(ip[24:40]))
		p += IPv6Len
		h.Proto = ip[6]
		if isExt(h.Proto) {
			var r Reason
			if p, r = extHeaders(b, p, h); r != ReasonNone || h.Fragment {
				return r
			}
		}
	default:
		return ReasonNone
	}
	switch h.Proto {
	case ProtoUDP, ProtoTCP:
		need := UDPLen
		if h.Proto == ProtoTCP {
			need = TCPMinLen
		}
		if len(b) < p+need {
			return ReasonTruncL4
		}
		l4 := b[p : p+4]
		h.HasPorts = true
		h.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		h.DstPort = binary.BigEndian.Uint16(l4[2:4])
	case ProtoICMP, ProtoICMPv6:
		if (h.Proto == ProtoICMP && h.Family == 4 || h.Proto == ProtoICMPv6 && h.Family == 6) && len(b) < p+ICMPLen {
			return ReasonTruncL4
		}
	}
	h.L4 = uint16(p)
	return ReasonNone
}

// vlans parses the VLAN tags starting at offset EthLen: it returns the
// offset and EtherType after them.
func vlans(b []byte, h *Headers) (p int, et uint16, r Reason) {
	p, et = EthLen, EtherTypeVLAN
	for ; h.VLANs < MaxVLANs && (et == EtherTypeVLAN || et == EtherTypeQinQ); h.VLANs++ {
		if len(b) < p+VLANLen {
			return p, et, ReasonTruncVLAN
		}
		tag := b[p : p+VLANLen]
		if h.VLANs == 0 {
			h.VLAN = binary.BigEndian.Uint16(tag[0:2])
		}
		et = binary.BigEndian.Uint16(tag[2:4])
		p += VLANLen
	}
	if et == EtherTypeVLAN || et == EtherTypeQinQ {
		return p, et, ReasonTooManyVLANs
	}
	return p, et, ReasonNone
}

// extHeaders walks the IPv6 extension headers starting at p, h.Proto being
// the first one's type: it sets h.Proto to the upper-layer protocol (and
// h.Fragment for a non-first fragment) and returns the offset after them.
func extHeaders(b []byte, p int, h *Headers) (int, Reason) {
	nh := h.Proto
	for i := 0; i < MaxExtHeaders && isExt(nh); i++ {
		if nh == 44 {
			if len(b) < p+8 {
				return p, ReasonTruncExt
			}
			nh = b[p]
			off := binary.BigEndian.Uint16(b[p+2:p+4]) & 0xfff8
			p += 8
			if off != 0 {
				h.Proto, h.Fragment = nh, true
				return p, ReasonNone
			}
			continue
		}
		if len(b) < p+2 {
			return p, ReasonTruncExt
		}
		l := (int(b[p+1]) + 1) * 8
		if len(b) < p+l {
			return p, ReasonTruncExt
		}
		nh = b[p]
		p += l
	}
	if isExt(nh) {
		return p, ReasonTooManyExt
	}
	h.Proto = nh
	return p, ReasonNone
}

// isExt reports the IPv6 extension headers the parser walks: hop-by-hop,
// routing, fragment and destination options.
func isExt(nh uint8) bool { return nh == 0 || nh == 43 || nh == 44 || nh == 60 }
