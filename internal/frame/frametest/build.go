// Package frametest builds Ethernet frames for tests: crafted by field
// (BuildFrame) and a corpus covering every case the parser knows, well-formed
// and malformed (SampleFrames).
package frametest

import (
	"encoding/binary"
	"net/netip"
)

// FrameSpec describes a test frame for BuildFrame: crafted frames for the
// steering program's tests, the fuzz corpus and the pipeline's filter
// tests. The zero value is an untagged frame of EtherType 0 with no payload.
type FrameSpec struct {
	// VLANs are the tags' VLAN ids, outermost first; the outermost of two
	// or more uses TPID 0x88a8 (802.1ad), the others 0x8100.
	VLANs []uint16
	// EtherType for non-IP frames (IPv4 and IPv6 set their own).
	EtherType uint16
	// Src and Dst select the family: both IPv4 or both IPv6 make an IP
	// frame; invalid addresses make a non-IP one.
	Src, Dst netip.Addr
	// IPv4: OptionWords is the number of 4-byte option words (IHL - 5);
	// IHL overrides the header length field when non-zero (malformed tests).
	OptionWords int
	IHL         int
	// FragOffset (in 8-byte units) and MoreFrags: IPv4 flags, or an IPv6
	// fragment header (added after ExtHeaders when either is set).
	FragOffset uint16
	MoreFrags  bool
	// ExtHeaders are IPv6 extension header types (0, 43, 60; 44 adds a
	// fragment header with offset 0) each of 8 bytes, before the fragment
	// header of FragOffset.
	ExtHeaders []uint8
	// Proto is the IP protocol / upper-layer header.
	Proto uint8
	// Sport and Dport for UDP (17) and TCP (6).
	Sport, Dport uint16
	// Payload bytes after the L4 header.
	Payload int
	// BadVersion writes the wrong IP version.
	BadVersion bool
}

// BuildFrame returns the frame described by s. Checksums are not filled in:
// the steering program does not look at them.
func BuildFrame(s FrameSpec) []byte {
	b := make([]byte, 12, 128)
	copy(b[0:6], []byte{0x02, 0x58, 0x44, 0x50, 0, 0x0b})
	copy(b[6:12], []byte{0x02, 0x58, 0x44, 0x50, 0, 0x0a})
	for i, v := range s.VLANs {
		tpid := uint16(0x8100)
		if i == 0 && len(s.VLANs) > 1 {
			tpid = 0x88a8
		}
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, v&0x0fff)
	}
	v4 := s.Src.Is4() && s.Dst.Is4()
	v6 := s.Src.Is6() && s.Dst.Is6() && !v4
	var l4 []byte
	switch s.Proto {
	case 17:
		l4 = make([]byte, 8)
	case 6:
		l4 = make([]byte, 20)
		l4[12] = 5 << 4
	case 1, 58:
		l4 = make([]byte, 8)
		l4[0] = 8
		if s.Proto == 58 {
			l4[0] = 128
		}
	}
	if s.Proto == 17 || s.Proto == 6 {
		binary.BigEndian.PutUint16(l4[0:], s.Sport)
		binary.BigEndian.PutUint16(l4[2:], s.Dport)
	}
	l4 = append(l4, make([]byte, s.Payload)...)
	for i := range s.Payload {
		l4[len(l4)-s.Payload+i] = byte(i)
	}
	if s.Proto == 17 {
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	}
	switch {
	case v4:
		b = binary.BigEndian.AppendUint16(b, 0x0800)
		hl := 20 + 4*s.OptionWords
		ip := make([]byte, hl)
		ihl := 5 + s.OptionWords
		if s.IHL != 0 {
			ihl = s.IHL
		}
		ip[0] = 4<<4 | byte(ihl&0x0f)
		if s.BadVersion {
			ip[0] = 6<<4 | byte(ihl&0x0f)
		}
		binary.BigEndian.PutUint16(ip[2:], uint16(hl+len(l4)))
		frag := s.FragOffset & 0x1fff
		if s.MoreFrags {
			frag |= 0x2000
		}
		binary.BigEndian.PutUint16(ip[6:], frag)
		ip[8] = 64
		ip[9] = s.Proto
		a, d := s.Src.As4(), s.Dst.As4()
		copy(ip[12:], a[:])
		copy(ip[16:], d[:])
		for i := 20; i < hl; i++ {
			ip[i] = 1 // NOP options
		}
		b = append(b, ip...)
		b = append(b, l4...)
	case v6:
		b = binary.BigEndian.AppendUint16(b, 0x86dd)
		hdrs := append([]uint8(nil), s.ExtHeaders...)
		frag := s.FragOffset != 0 || s.MoreFrags
		if frag {
			hdrs = append(hdrs, 44)
		}
		var ext []byte
		for i, h := range hdrs {
			next := s.Proto
			if i+1 < len(hdrs) {
				next = hdrs[i+1]
			}
			e := make([]byte, 8)
			e[0] = next
			if h == 44 && i == len(hdrs)-1 && frag {
				off := s.FragOffset << 3
				if s.MoreFrags {
					off |= 1
				}
				binary.BigEndian.PutUint16(e[2:], off)
				e[4] = 0x12 // identification
			} else if h != 44 {
				e[2], e[3] = 1, 4 // PadN option of 4 bytes
			}
			ext = append(ext, e...)
		}
		ip := make([]byte, 40)
		ip[0] = 6 << 4
		if s.BadVersion {
			ip[0] = 4 << 4
		}
		binary.BigEndian.PutUint16(ip[4:], uint16(len(ext)+len(l4)))
		first := s.Proto
		if len(hdrs) > 0 {
			first = hdrs[0]
		}
		ip[6] = first
		ip[7] = 64
		a, d := s.Src.As16(), s.Dst.As16()
		copy(ip[8:], a[:])
		copy(ip[24:], d[:])
		b = append(b, ip...)
		b = append(b, ext...)
		b = append(b, l4...)
	default:
		b = binary.BigEndian.AppendUint16(b, s.EtherType)
		b = append(b, make([]byte, 46)...)
	}
	return b
}
