package pipeline

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// EtherTypes and IP protocols the parser knows.
const (
	EtherTypeIPv4  = 0x0800
	EtherTypeIPv6  = 0x86dd
	EtherTypeVLAN  = 0x8100
	EtherTypeQinQ  = 0x88a8
	ProtoICMP      = 1
	ProtoTCP       = 6
	ProtoUDP       = 17
	ProtoICMPv6    = 58
	ethHeaderLen   = 14
	vlanHeaderLen  = 4
	ipv4MinLen     = 20
	ipv6HeaderLen  = 40
	maxVLANHeaders = 2
)

// Parse errors. They are preallocated values: parsing a malformed frame
// allocates nothing either.
var (
	ErrTruncated = errors.New("truncated header")
	ErrMalformed = errors.New("malformed header")
)

// Headers are the parsed header fields of one frame: offsets into the frame
// and the fields rules match on. A Headers value is reused frame after frame
// (Parse overwrites every field); it holds no pointer into the frame.
//
// We parse ourselves rather than with gopacket's DecodingLayerParser: the
// parser with preallocated layers does allocate nothing on well-formed
// Ethernet/IPv4/UDP (testing.AllocsPerRun == 0), but it allocates two
// objects per truncated or malformed frame (its errors are built with
// fmt.Errorf), which hostile traffic can trigger at line rate, and it costs
// ~136 ns/frame against ~10 ns here (see BenchmarkParse*,
// TestDecodingLayerParserAllocs).
type Headers struct {
	EtherType uint16 // innermost EtherType, after VLAN tags
	VLANs     uint8  // number of VLAN tags (0..2)
	VLAN      uint16 // outer VLAN TCI (PCP, DEI, VID), if VLANs > 0
	L3        uint16 // offset of the IP header, 0 if none
	L4        uint16 // offset of the transport header, 0 if none
	Proto     uint8  // IP protocol (IPv6: after the extension headers we skip)
	TTL       uint8  // IPv4 TTL or IPv6 hop limit
	TOS       uint8  // IPv4 TOS or IPv6 traffic class
	Fragment  bool   // a non-first fragment: no transport header
	Src, Dst  netip.Addr
	SrcPort   uint16 // TCP/UDP ports; ICMP: type and code in SrcPort, 0 in DstPort
	DstPort   uint16
}

// Parse fills h from the frame. On error the fields parsed so far are kept
// (EtherType and VLANs for a frame with a bad IP header) and the rest zeroed.
func (h *Headers) Parse(b []byte) error {
	*h = Headers{}
	if len(b) < ethHeaderLen {
		return ErrTruncated
	}
	et := binary.BigEndian.Uint16(b[12:14])
	off := ethHeaderLen
	for (et == EtherTypeVLAN || et == EtherTypeQinQ) && h.VLANs < maxVLANHeaders {
		if len(b) < off+vlanHeaderLen {
			return ErrTruncated
		}
		if h.VLANs == 0 {
			h.VLAN = binary.BigEndian.Uint16(b[off : off+2])
		}
		h.VLANs++
		et = binary.BigEndian.Uint16(b[off+2 : off+4])
		off += vlanHeaderLen
	}
	h.EtherType = et
	switch et {
	case EtherTypeIPv4:
		if len(b) < off+ipv4MinLen {
			return ErrTruncated
		}
		ip := b[off:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[0]>>4 != 4 || ihl < ipv4MinLen {
			return ErrMalformed
		}
		if len(ip) < ihl {
			return ErrTruncated
		}
		h.L3 = uint16(off)
		h.TOS, h.TTL, h.Proto = ip[1], ip[8], ip[9]
		h.Src = netip.AddrFrom4([4]byte(ip[12:16]))
		h.Dst = netip.AddrFrom4([4]byte(ip[16:20]))
		if binary.BigEndian.Uint16(ip[6:8])&0x1fff != 0 {
			h.Fragment = true
			return nil
		}
		off += ihl
	case EtherTypeIPv6:
		if len(b) < off+ipv6HeaderLen {
			return ErrTruncated
		}
		ip := b[off:]
		if ip[0]>>4 != 6 {
			return ErrMalformed
		}
		h.L3 = uint16(off)
		h.TOS = ip[0]<<4 | ip[1]>>4
		h.TTL = ip[7]
		h.Src = netip.AddrFrom16([16]byte(ip[8:24]))
		h.Dst = netip.AddrFrom16([16]byte(ip[24:40]))
		next := ip[6]
		off += ipv6HeaderLen
		// Skip the common extension headers: hop-by-hop, routing,
		// destination options, fragment.
		for i := 0; i < 4; i++ {
			switch next {
			case 0, 43, 60:
				if len(b) < off+8 {
					return ErrTruncated
				}
				next = b[off]
				off += (int(b[off+1]) + 1) * 8
				continue
			case 44:
				if len(b) < off+8 {
					return ErrTruncated
				}
				frag := binary.BigEndian.Uint16(b[off+2:off+4]) &^ 7
				next = b[off]
				off += 8
				if frag != 0 {
					h.Proto = next
					h.Fragment = true
					return nil
				}
				continue
			}
			break
		}
		if off > len(b) {
			return ErrTruncated
		}
		h.Proto = next
	default:
		return nil
	}
	switch h.Proto {
	case ProtoTCP, ProtoUDP:
		if len(b) < off+4 {
			return ErrTruncated
		}
		h.L4 = uint16(off)
		h.SrcPort = binary.BigEndian.Uint16(b[off : off+2])
		h.DstPort = binary.BigEndian.Uint16(b[off+2 : off+4])
	case ProtoICMP, ProtoICMPv6:
		if len(b) < off+2 {
			return ErrTruncated
		}
		h.L4 = uint16(off)
		h.SrcPort = uint16(b[off])<<8 | uint16(b[off+1])
	}
	return nil
}
