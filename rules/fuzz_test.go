package rules

import (
	"net/netip"
	"testing"

	"github.com/xdpipe/xdpipe/internal/frame/frametest"
)

// FuzzParseFrame: the parser never panics, never reads past the frame
// (a panic would show), and its tuple is self-consistent. Seeds: every
// sample frame. Run: go test ./rules/ -run '^$' -fuzz FuzzParseFrame
func FuzzParseFrame(f *testing.F) {
	for _, s := range frametest.SampleFrames() {
		f.Add(s.Frame)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tu, r := ParseFrame(b, 7)
		if r >= NumReasons {
			t.Fatalf("reason %d out of range", r)
		}
		if r != ReasonNone {
			return
		}
		if tu.Ifindex != 7 {
			t.Fatalf("ifindex %d", tu.Ifindex)
		}
		switch tu.Family {
		case 0:
			if tu.Src.IsValid() || tu.HasPorts || tu.EtherType == 0x0800 || tu.EtherType == 0x86dd {
				t.Fatalf("non-IP tuple %+v", tu)
			}
		case 4:
			if tu.EtherType != 0x0800 || !tu.Src.Is4() || !tu.Dst.Is4() {
				t.Fatalf("IPv4 tuple %+v", tu)
			}
		case 6:
			if tu.EtherType != 0x86dd || !tu.Src.Is6() || !tu.Dst.Is6() {
				t.Fatalf("IPv6 tuple %+v", tu)
			}
		default:
			t.Fatalf("family %d", tu.Family)
		}
		if tu.HasPorts && tu.Proto != 6 && tu.Proto != 17 {
			t.Fatalf("ports on protocol %d", tu.Proto)
		}
		// A rule built from the tuple matches it.
		r0 := Rule{Fields: FieldIfindex | FieldEtherType, Ifindex: 7, EtherType: tu.EtherType}
		if tu.HasVLAN {
			r0.Fields |= FieldVLAN
			r0.VLAN = tu.VLAN
		}
		if tu.Family != 0 {
			r0.Fields |= FieldProto | FieldSrc | FieldDst
			r0.Proto = tu.Proto
			r0.Src = netip.PrefixFrom(tu.Src, tu.Src.BitLen())
			r0.Dst = netip.PrefixFrom(tu.Dst, 0)
		}
		if tu.HasPorts {
			r0.Fields |= FieldSport | FieldDport
			r0.Sport = PortRange{tu.Sport, tu.Sport}
			r0.Dport = PortRange{0, 65535}
		}
		if !r0.Match(&tu) {
			t.Fatalf("rule %s does not match its own tuple %+v", r0.MatchString(), tu)
		}
	})
}

// BenchmarkDecide is the reference matcher's cost per frame (parse and a
// linear scan of 100 rules, the last matching): what the Go filter stage
// pays per packet. 0 allocations.
func BenchmarkDecide(b *testing.B) {
	set := &Set{}
	for i := range 100 {
		set.Rules = append(set.Rules, Rule{Priority: uint32(i), Fields: FieldProto | FieldDport, Proto: 17,
			Dport: PortRange{uint16(1000 + i), uint16(1000 + i)}, Action: ActionRedirect})
	}
	if err := set.Normalize(); err != nil {
		b.Fatal(err)
	}
	f := frametest.BuildFrame(frametest.FrameSpec{Src: frametest.Src4, Dst: frametest.Dst4, Proto: 17, Sport: 1, Dport: 1099})
	b.ReportAllocs()
	for b.Loop() {
		if d := set.Decide(f, 1); d.Rule != 99 {
			b.Fatal(d)
		}
	}
}
