package rules

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// Reason says why a frame is malformed.
type Reason uint8

// The reasons, in the order of the steering program's counters.
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

const (
	// MaxVLANs is how many stacked VLAN tags a frame may carry.
	MaxVLANs = 2
	// MaxExtHeaders bounds the IPv6 extension header chain.
	MaxExtHeaders = 6
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

// ParseFrame parses an Ethernet frame received on ifindex. It returns the
// tuple, or the reason the frame is malformed:
//
//   - Up to MaxVLANs 802.1Q/802.1ad tags; one more is ReasonTooManyVLANs.
//   - IPv4: version 4, IHL >= 5, the header with its options present. The
//     total length field is not checked. A non-first fragment (offset != 0)
//     has no ports and its L4 header is not looked at.
//   - IPv6: version 6, then up to MaxExtHeaders of hop-by-hop, routing,
//     fragment and destination options headers, each present in full; a
//     longer chain is ReasonTooManyExt. A fragment header with a non-zero
//     offset ends parsing: protocol is its next header, no ports. Other
//     headers (AH, ESP, no next header...) are the upper-layer protocol.
//   - L4: UDP needs 8 bytes, TCP 20, ICMP (in IPv4) and ICMPv6 (in IPv6) 8.
//
// Frames of other EtherTypes are not malformed: they match on interface,
// VLAN and EtherType only.
func ParseFrame(b []byte, ifindex uint32) (Tuple, Reason) {
	t := Tuple{Ifindex: ifindex}
	if len(b) < 14 {
		return t, ReasonTruncEth
	}
	et := binary.BigEndian.Uint16(b[12:])
	p := 14
	for i := 0; i < MaxVLANs && (et == 0x8100 || et == 0x88a8); i++ {
		if p+4 > len(b) {
			return t, ReasonTruncVLAN
		}
		if i == 0 {
			t.HasVLAN = true
			t.VLAN = binary.BigEndian.Uint16(b[p:]) & 0x0fff
		}
		et = binary.BigEndian.Uint16(b[p+2:])
		p += 4
	}
	if et == 0x8100 || et == 0x88a8 {
		return t, ReasonTooManyVLANs
	}
	t.EtherType = et
	nonFirst := false
	switch et {
	case 0x0800:
		if p+20 > len(b) {
			return t, ReasonTruncIPv4
		}
		if b[p]>>4 != 4 {
			return t, ReasonBadVersion
		}
		hl := int(b[p]&0x0f) * 4
		if hl < 20 {
			return t, ReasonBadIHL
		}
		if p+hl > len(b) {
			return t, ReasonTruncIPv4
		}
		t.Family = 4
		t.Proto = b[p+9]
		t.Src = netip.AddrFrom4([4]byte(b[p+12 : p+16]))
		t.Dst = netip.AddrFrom4([4]byte(b[p+16 : p+20]))
		nonFirst = binary.BigEndian.Uint16(b[p+6:])&0x1fff != 0
		p += hl
	case 0x86dd:
		if p+40 > len(b) {
			return t, ReasonTruncIPv6
		}
		if b[p]>>4 != 6 {
			return t, ReasonBadVersion
		}
		t.Family = 6
		t.Src = netip.AddrFrom16([16]byte(b[p+8 : p+24]))
		t.Dst = netip.AddrFrom16([16]byte(b[p+24 : p+40]))
		nh := b[p+6]
		p += 40
		for i := 0; i < MaxExtHeaders && isExt(nh); i++ {
			if nh == 44 {
				if p+8 > len(b) {
					return t, ReasonTruncExt
				}
				nh = b[p]
				off := binary.BigEndian.Uint16(b[p+2:]) & 0xfff8
				p += 8
				if off != 0 {
					nonFirst = true
					break
				}
				continue
			}
			if p+2 > len(b) {
				return t, ReasonTruncExt
			}
			l := (int(b[p+1]) + 1) * 8
			if p+l > len(b) {
				return t, ReasonTruncExt
			}
			nh = b[p]
			p += l
		}
		if !nonFirst && isExt(nh) {
			return t, ReasonTooManyExt
		}
		t.Proto = nh
	default:
		return t, ReasonNone
	}
	if nonFirst {
		return t, ReasonNone
	}
	switch {
	case t.Proto == 17 || t.Proto == 6:
		need := 8
		if t.Proto == 6 {
			need = 20
		}
		if p+need > len(b) {
			return t, ReasonTruncL4
		}
		t.HasPorts = true
		t.Sport = binary.BigEndian.Uint16(b[p:])
		t.Dport = binary.BigEndian.Uint16(b[p+2:])
	case t.Proto == 1 && t.Family == 4, t.Proto == 58 && t.Family == 6:
		if p+8 > len(b) {
			return t, ReasonTruncL4
		}
	}
	return t, ReasonNone
}

func isExt(nh uint8) bool { return nh == 0 || nh == 43 || nh == 44 || nh == 60 }
