package rules

import (
	"net/netip"
	"testing"

	"github.com/xdpipe/xdpipe/internal/frame/frametest"
)

func TestParseFrame(t *testing.T) {
	udp4 := frametest.FrameSpec{Src: frametest.Src4, Dst: frametest.Dst4, Proto: 17, Sport: 1000, Dport: 53}
	with := func(s frametest.FrameSpec, f func(*frametest.FrameSpec)) frametest.FrameSpec {
		s.VLANs = append([]uint16(nil), s.VLANs...)
		s.ExtHeaders = append([]uint8(nil), s.ExtHeaders...)
		f(&s)
		return s
	}
	udp6 := frametest.FrameSpec{Src: frametest.Src6, Dst: frametest.Dst6, Proto: 17, Sport: 1000, Dport: 53}
	for _, tc := range []struct {
		name string
		spec frametest.FrameSpec
		cut  int // truncate to this length when > 0
		want Tuple
		fail Reason
	}{
		{name: "udp4", spec: udp4, want: Tuple{EtherType: 0x0800, Family: 4, Proto: 17, Src: frametest.Src4, Dst: frametest.Dst4, HasPorts: true, Sport: 1000, Dport: 53}},
		{name: "tcp4", spec: with(udp4, func(s *frametest.FrameSpec) { s.Proto = 6 }), want: Tuple{EtherType: 0x0800, Family: 4, Proto: 6, Src: frametest.Src4, Dst: frametest.Dst4, HasPorts: true, Sport: 1000, Dport: 53}},
		{name: "icmp4", spec: with(udp4, func(s *frametest.FrameSpec) { s.Proto = 1 }), want: Tuple{EtherType: 0x0800, Family: 4, Proto: 1, Src: frametest.Src4, Dst: frametest.Dst4}},
		{name: "gre4", spec: with(udp4, func(s *frametest.FrameSpec) { s.Proto = 47 }), want: Tuple{EtherType: 0x0800, Family: 4, Proto: 47, Src: frametest.Src4, Dst: frametest.Dst4}},
		{name: "udp4-options", spec: with(udp4, func(s *frametest.FrameSpec) { s.OptionWords = 10 }), want: Tuple{EtherType: 0x0800, Family: 4, Proto: 17, Src: frametest.Src4, Dst: frametest.Dst4, HasPorts: true, Sport: 1000, Dport: 53}},
		{name: "udp4-first-fragment", spec: with(udp4, func(s *frametest.FrameSpec) { s.MoreFrags = true }), want: Tuple{EtherType: 0x0800, Family: 4, Proto: 17, Src: frametest.Src4, Dst: frametest.Dst4, HasPorts: true, Sport: 1000, Dport: 53}},
		{name: "udp4-later-fragment", spec: with(udp4, func(s *frametest.FrameSpec) { s.FragOffset = 185 }), want: Tuple{EtherType: 0x0800, Family: 4, Proto: 17, Src: frametest.Src4, Dst: frametest.Dst4}},
		{name: "udp4-later-fragment-short", spec: with(udp4, func(s *frametest.FrameSpec) { s.FragOffset = 1 }), cut: 14 + 20 + 2, want: Tuple{EtherType: 0x0800, Family: 4, Proto: 17, Src: frametest.Src4, Dst: frametest.Dst4}},
		{name: "vlan", spec: with(udp4, func(s *frametest.FrameSpec) { s.VLANs = []uint16{100} }), want: Tuple{HasVLAN: true, VLAN: 100, EtherType: 0x0800, Family: 4, Proto: 17, Src: frametest.Src4, Dst: frametest.Dst4, HasPorts: true, Sport: 1000, Dport: 53}},
		{name: "qinq", spec: with(udp4, func(s *frametest.FrameSpec) { s.VLANs = []uint16{100, 200} }), want: Tuple{HasVLAN: true, VLAN: 100, EtherType: 0x0800, Family: 4, Proto: 17, Src: frametest.Src4, Dst: frametest.Dst4, HasPorts: true, Sport: 1000, Dport: 53}},
		{name: "arp", spec: frametest.FrameSpec{EtherType: 0x0806}, want: Tuple{EtherType: 0x0806}},
		{name: "arp-vlan", spec: frametest.FrameSpec{EtherType: 0x0806, VLANs: []uint16{7}}, want: Tuple{HasVLAN: true, VLAN: 7, EtherType: 0x0806}},
		{name: "udp6", spec: udp6, want: Tuple{EtherType: 0x86dd, Family: 6, Proto: 17, Src: frametest.Src6, Dst: frametest.Dst6, HasPorts: true, Sport: 1000, Dport: 53}},
		{name: "tcp6", spec: with(udp6, func(s *frametest.FrameSpec) { s.Proto = 6 }), want: Tuple{EtherType: 0x86dd, Family: 6, Proto: 6, Src: frametest.Src6, Dst: frametest.Dst6, HasPorts: true, Sport: 1000, Dport: 53}},
		{name: "icmp6", spec: with(udp6, func(s *frametest.FrameSpec) { s.Proto = 58 }), want: Tuple{EtherType: 0x86dd, Family: 6, Proto: 58, Src: frametest.Src6, Dst: frametest.Dst6}},
		{name: "udp6-ext", spec: with(udp6, func(s *frametest.FrameSpec) { s.ExtHeaders = []uint8{0, 43, 60} }), want: Tuple{EtherType: 0x86dd, Family: 6, Proto: 17, Src: frametest.Src6, Dst: frametest.Dst6, HasPorts: true, Sport: 1000, Dport: 53}},
		{name: "udp6-6-ext", spec: with(udp6, func(s *frametest.FrameSpec) { s.ExtHeaders = []uint8{0, 60, 43, 44, 60, 60} }), want: Tuple{EtherType: 0x86dd, Family: 6, Proto: 17, Src: frametest.Src6, Dst: frametest.Dst6, HasPorts: true, Sport: 1000, Dport: 53}},
		{name: "udp6-first-fragment", spec: with(udp6, func(s *frametest.FrameSpec) { s.MoreFrags = true }), want: Tuple{EtherType: 0x86dd, Family: 6, Proto: 17, Src: frametest.Src6, Dst: frametest.Dst6, HasPorts: true, Sport: 1000, Dport: 53}},
		{name: "udp6-later-fragment", spec: with(udp6, func(s *frametest.FrameSpec) { s.FragOffset = 100; s.ExtHeaders = []uint8{0} }), want: Tuple{EtherType: 0x86dd, Family: 6, Proto: 17, Src: frametest.Src6, Dst: frametest.Dst6}},
		{name: "ah6", spec: with(udp6, func(s *frametest.FrameSpec) { s.Proto = 51 }), want: Tuple{EtherType: 0x86dd, Family: 6, Proto: 51, Src: frametest.Src6, Dst: frametest.Dst6}},
		{name: "icmp4-in-ipv6-short", spec: with(udp6, func(s *frametest.FrameSpec) { s.Proto = 1 }), cut: 14 + 40 + 2, want: Tuple{EtherType: 0x86dd, Family: 6, Proto: 1, Src: frametest.Src6, Dst: frametest.Dst6}},

		{name: "empty", spec: udp4, cut: -1, fail: ReasonTruncEth},
		{name: "short-ethernet", spec: udp4, cut: 13, fail: ReasonTruncEth},
		{name: "trunc-vlan", spec: with(udp4, func(s *frametest.FrameSpec) { s.VLANs = []uint16{1} }), cut: 17, fail: ReasonTruncVLAN},
		{name: "trunc-inner-vlan", spec: with(udp4, func(s *frametest.FrameSpec) { s.VLANs = []uint16{1, 2} }), cut: 21, fail: ReasonTruncVLAN},
		{name: "three-vlans", spec: with(udp4, func(s *frametest.FrameSpec) { s.VLANs = []uint16{1, 2, 3} }), fail: ReasonTooManyVLANs},
		{name: "trunc-ipv4", spec: udp4, cut: 14 + 19, fail: ReasonTruncIPv4},
		{name: "trunc-ipv4-empty", spec: udp4, cut: 14, fail: ReasonTruncIPv4},
		{name: "trunc-ipv4-options", spec: with(udp4, func(s *frametest.FrameSpec) { s.OptionWords = 4 }), cut: 14 + 30, fail: ReasonTruncIPv4},
		{name: "ihl-4", spec: with(udp4, func(s *frametest.FrameSpec) { s.IHL = 4 }), fail: ReasonBadIHL},
		{name: "ihl-0", spec: with(udp4, func(s *frametest.FrameSpec) { s.IHL = 16 }), fail: ReasonBadIHL},
		{name: "bad-version4", spec: with(udp4, func(s *frametest.FrameSpec) { s.BadVersion = true }), fail: ReasonBadVersion},
		{name: "bad-version6", spec: with(udp6, func(s *frametest.FrameSpec) { s.BadVersion = true }), fail: ReasonBadVersion},
		{name: "trunc-ipv6", spec: udp6, cut: 14 + 39, fail: ReasonTruncIPv6},
		{name: "trunc-ext", spec: with(udp6, func(s *frametest.FrameSpec) { s.ExtHeaders = []uint8{0} }), cut: 14 + 40 + 1, fail: ReasonTruncExt},
		{name: "trunc-ext-body", spec: with(udp6, func(s *frametest.FrameSpec) { s.ExtHeaders = []uint8{0} }), cut: 14 + 40 + 7, fail: ReasonTruncExt},
		{name: "trunc-frag", spec: with(udp6, func(s *frametest.FrameSpec) { s.FragOffset = 3 }), cut: 14 + 40 + 7, fail: ReasonTruncExt},
		{name: "seven-ext", spec: with(udp6, func(s *frametest.FrameSpec) { s.ExtHeaders = []uint8{0, 60, 60, 60, 60, 60, 43} }), fail: ReasonTooManyExt},
		{name: "trunc-udp4", spec: udp4, cut: 14 + 20 + 7, fail: ReasonTruncL4},
		{name: "trunc-tcp4", spec: with(udp4, func(s *frametest.FrameSpec) { s.Proto = 6 }), cut: 14 + 20 + 19, fail: ReasonTruncL4},
		{name: "trunc-icmp4", spec: with(udp4, func(s *frametest.FrameSpec) { s.Proto = 1 }), cut: 14 + 20 + 7, fail: ReasonTruncL4},
		{name: "trunc-udp6", spec: udp6, cut: 14 + 40 + 7, fail: ReasonTruncL4},
		{name: "trunc-tcp6-ext", spec: with(udp6, func(s *frametest.FrameSpec) { s.Proto = 6; s.ExtHeaders = []uint8{60} }), cut: 14 + 48 + 10, fail: ReasonTruncL4},
		{name: "trunc-icmp6", spec: with(udp6, func(s *frametest.FrameSpec) { s.Proto = 58 }), cut: 14 + 40 + 4, fail: ReasonTruncL4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := frametest.BuildFrame(tc.spec)
			switch {
			case tc.cut < 0:
				b = b[:0]
			case tc.cut > 0:
				b = b[:tc.cut]
			}
			got, reason := ParseFrame(b, 3)
			if reason != tc.fail {
				t.Fatalf("reason %v, want %v", reason, tc.fail)
			}
			if reason != ReasonNone {
				return
			}
			tc.want.Ifindex = 3
			if got != tc.want {
				t.Fatalf("tuple\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestRuleMatch(t *testing.T) {
	tu := Tuple{Ifindex: 3, HasVLAN: true, VLAN: 100, EtherType: 0x0800, Family: 4, Proto: 17,
		Src: frametest.Src4, Dst: frametest.Dst4, HasPorts: true, Sport: 1000, Dport: 53}
	arp := Tuple{Ifindex: 3, EtherType: 0x0806}
	for _, tc := range []struct {
		r          Rule
		want, warp bool
	}{
		{Rule{}, true, true},
		{Rule{Fields: FieldIfindex, Ifindex: 3}, true, true},
		{Rule{Fields: FieldIfindex, Ifindex: 4}, false, false},
		{Rule{Fields: FieldVLAN, VLAN: 100}, true, false},
		{Rule{Fields: FieldEtherType, EtherType: 0x0806}, false, true},
		{Rule{Fields: FieldProto, Proto: 17}, true, false},
		{Rule{Fields: FieldSrc, Src: netip.MustParsePrefix("198.18.0.0/15")}, true, false},
		{Rule{Fields: FieldSrc, Src: netip.MustParsePrefix("0.0.0.0/0")}, true, false},
		{Rule{Fields: FieldSrc, Src: netip.MustParsePrefix("::/0")}, false, false},
		{Rule{Fields: FieldDst, Dst: netip.MustParsePrefix("198.18.2.2/32")}, true, false},
		{Rule{Fields: FieldDst, Dst: netip.MustParsePrefix("198.18.2.3/32")}, false, false},
		{Rule{Fields: FieldSport, Sport: PortRange{999, 1000}}, true, false},
		{Rule{Fields: FieldDport, Dport: PortRange{54, 60}}, false, false},
		{Rule{Fields: FieldDport | FieldProto, Dport: PortRange{53, 53}, Proto: 6}, false, false},
	} {
		if got := tc.r.Match(&tu); got != tc.want {
			t.Errorf("%s on udp4: %v, want %v", tc.r.MatchString(), got, tc.want)
		}
		if got := tc.r.Match(&arp); got != tc.warp {
			t.Errorf("%s on arp: %v, want %v", tc.r.MatchString(), got, tc.warp)
		}
	}
}

func TestSetDecide(t *testing.T) {
	set := &Set{Default: ActionPass, Malformed: ActionDrop, Rules: []Rule{
		{Priority: 20, Fields: FieldProto, Proto: 17, Action: ActionDrop},
		{Priority: 10, Fields: FieldDport, Dport: PortRange{53, 53}, Action: ActionRedirect},
	}}
	if err := set.Normalize(); err != nil {
		t.Fatal(err)
	}
	f := frametest.BuildFrame(frametest.FrameSpec{Src: frametest.Src4, Dst: frametest.Dst4, Proto: 17, Sport: 1, Dport: 53})
	if d := set.Decide(f, 1); d.Rule != 0 || d.Action != ActionRedirect {
		t.Errorf("dns: %+v", d)
	}
	f = frametest.BuildFrame(frametest.FrameSpec{Src: frametest.Src4, Dst: frametest.Dst4, Proto: 17, Sport: 1, Dport: 54})
	if d := set.Decide(f, 1); d.Rule != 1 || d.Action != ActionDrop {
		t.Errorf("udp: %+v", d)
	}
	f = frametest.BuildFrame(frametest.FrameSpec{Src: frametest.Src4, Dst: frametest.Dst4, Proto: 6, Sport: 1, Dport: 54})
	if d := set.Decide(f, 1); d.Rule != -1 || d.Action != ActionPass {
		t.Errorf("tcp: %+v", d)
	}
	if d := set.Decide(f[:20], 1); d.Reason != ReasonTruncIPv4 || d.Action != ActionDrop {
		t.Errorf("truncated: %+v", d)
	}
}

func TestParseFrameAllocs(t *testing.T) {
	f := frametest.BuildFrame(frametest.FrameSpec{Src: frametest.Src6, Dst: frametest.Dst6, Proto: 17, ExtHeaders: []uint8{0}})
	set := &Set{Rules: []Rule{{Fields: FieldDst, Dst: netip.MustParsePrefix("2001:2::/48")}}}
	if n := testing.AllocsPerRun(100, func() { set.Decide(f, 1) }); n != 0 {
		t.Fatalf("%v allocations per Decide", n)
	}
}

func TestSampleFramesCoverEveryReason(t *testing.T) {
	seen := map[Reason]int{}
	for _, s := range frametest.SampleFrames() {
		_, r := ParseFrame(s.Frame, 1)
		seen[r]++
	}
	for r := ReasonNone; r < NumReasons; r++ {
		if seen[r] == 0 && r != ReasonTruncEth {
			t.Errorf("no sample frame is %v", r)
		}
	}
	t.Logf("%d samples: %v", len(frametest.SampleFrames()), seen)
}

// BenchmarkParseFrame: one IPv4/UDP frame through the parser.
func BenchmarkParseFrame(b *testing.B) {
	f := frametest.BuildFrame(frametest.FrameSpec{Src: frametest.Src4, Dst: frametest.Dst4, Proto: 17, Sport: 1, Dport: 53})
	b.ReportAllocs()
	for b.Loop() {
		if _, r := ParseFrame(f, 1); r != ReasonNone {
			b.Fatal(r)
		}
	}
}
