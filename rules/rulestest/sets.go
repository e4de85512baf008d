// Package rulestest generates rule sets for tests: from fuzzer bytes, from a
// seed, with field values taken from sample frames so that rules match.
package rulestest

import (
	"net/netip"

	"github.com/xdpipe/xdpipe/internal/frame/frametest"
	"github.com/xdpipe/xdpipe/rules"
)

// byteSource reads fuzz input a byte at a time, zeros when exhausted.
type byteSource struct{ b []byte }

func (s *byteSource) next() byte {
	if len(s.b) == 0 {
		return 0
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c
}

func (s *byteSource) u16() uint16 { return uint16(s.next())<<8 | uint16(s.next()) }

// FuzzSet derives a rule set from fuzzer bytes, for differential tests of
// a matcher (the BPF program, Compile) against Match. Field values come
// from tuples three quarters of the time, so that rules do match; rules
// that match an interface match ifindex three quarters of the time. Bytes
// past the end of data read as zero. The set is not normalized. The byte
// layout is fixed: checked-in fuzz corpora depend on it.
func FuzzSet(data []byte, tuples []rules.Tuple, ifindex uint32) *rules.Set {
	src := &byteSource{b: data}
	set := &rules.Set{Default: rules.Action(src.next() % 3), Malformed: rules.Action(src.next() % 3)}
	n := int(src.next() % 17)
	randPrefix := func(tu *rules.Tuple, useTuple bool, v6 bool, dst bool) netip.Prefix {
		var a netip.Addr
		switch {
		case useTuple && tu.Family != 0 && (tu.Family == 6) == v6:
			a = tu.Src
			if dst {
				a = tu.Dst
			}
		case v6:
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 15: src.next() % 4})
		default:
			a = netip.AddrFrom4([4]byte{198, 18, src.next() % 4, src.next() % 4})
		}
		p, _ := a.Prefix(int(src.next()) % (a.BitLen() + 1))
		return p
	}
	randRange := func(tu *rules.Tuple, useTuple bool, port uint16) rules.PortRange {
		var lo uint16
		if useTuple && tu.HasPorts {
			lo = port - uint16(src.next()%3)
			if lo > port {
				lo = 0
			}
		} else {
			lo = src.u16()
		}
		hi := lo + uint16(src.next()%4)
		if hi < lo {
			hi = 0xffff
		}
		return rules.PortRange{Lo: lo, Hi: hi}
	}
	for i := range n {
		var tu rules.Tuple
		if len(tuples) > 0 {
			tu = tuples[int(src.next())%len(tuples)]
		}
		a, b := src.next(), src.next()
		f := rules.Field(a & b) // a quarter of the fields each
		r := rules.Rule{Priority: uint32(src.next())<<8 | uint32(i), Fields: f, Action: rules.Action(src.next() % 3)}
		c, d := src.next(), src.next()
		use := c | d // three quarters from the tuple
		if f&rules.FieldIfindex != 0 {
			r.Ifindex = ifindex
			if use&1 == 0 {
				r.Ifindex = 1 + uint32(src.next()%3)
			}
		}
		if f&rules.FieldVLAN != 0 {
			r.VLAN = tu.VLAN
			if use&2 == 0 {
				r.VLAN = uint16(src.next()%4) * 100
			}
		}
		if f&rules.FieldEtherType != 0 {
			r.EtherType = tu.EtherType
			if use&4 == 0 {
				r.EtherType = []uint16{0x0800, 0x86dd, 0x0806, 0x88cc}[src.next()%4]
			}
		}
		if f&rules.FieldProto != 0 {
			r.Proto = tu.Proto
			if use&8 == 0 {
				r.Proto = []uint8{6, 17, 1, 58, 47, 0}[src.next()%6]
			}
		}
		v6 := src.next()&1 == 1
		if use&16 != 0 && tu.Family != 0 {
			v6 = tu.Family == 6
		}
		if f&rules.FieldSrc != 0 {
			r.Src = randPrefix(&tu, use&16 != 0, v6, false)
		}
		if f&rules.FieldDst != 0 {
			r.Dst = randPrefix(&tu, use&32 != 0, v6, true)
		}
		if f&rules.FieldSport != 0 {
			r.Sport = randRange(&tu, use&64 != 0, tu.Sport)
		}
		if f&rules.FieldDport != 0 {
			r.Dport = randRange(&tu, use&128 != 0, tu.Dport)
		}
		set.Rules = append(set.Rules, r)
	}
	return set
}

// SeededSet is FuzzSet over size bytes of a xorshift32 stream started at x
// (not zero): many reproducible rule sets for tests without a fuzzer.
func SeededSet(x uint32, size int, tuples []rules.Tuple, ifindex uint32) *rules.Set {
	data := make([]byte, size)
	for i := range data {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		data[i] = byte(x)
	}
	return FuzzSet(data, tuples, ifindex)
}

// SampleTuples are the tuples of the SampleFrames that parse cleanly as
// received on ifindex: field values for FuzzSet's rules to match.
func SampleTuples(ifindex uint32) []rules.Tuple {
	var tuples []rules.Tuple
	for _, s := range frametest.SampleFrames() {
		if tu, r := rules.ParseFrame(s.Frame, ifindex); r == rules.ReasonNone {
			tuples = append(tuples, tu)
		}
	}
	return tuples
}
