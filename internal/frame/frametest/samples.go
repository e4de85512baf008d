package frametest

import (
	"fmt"
	"net/netip"
)

// Addresses of the sample frames, for tests to build frames and rules with.
var (
	Src4 = netip.MustParseAddr("198.18.1.1")
	Dst4 = netip.MustParseAddr("198.18.2.2")
	Src6 = netip.MustParseAddr("2001:2::1")
	Dst6 = netip.MustParseAddr("2001:2::2")
)

// protoNames names the protocols of the sample frames.
var protoNames = map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 58: "icmpv6"}

// Sample is a named test frame.
type Sample struct {
	Name  string
	Frame []byte
}

// SampleFrames returns frames covering every protocol combination the
// parser knows (IPv4, IPv6, ARP; UDP, TCP, ICMP/ICMPv6, another protocol;
// no, one or two VLAN tags; IPv4 options and fragments; IPv6 extension
// headers and fragments) and every malformed case (cut short at each header,
// bad IHL, bad version, three VLAN tags, too long an extension chain), for
// tests of the steering program, its fuzz corpus and the filter stage.
// Frames shorter than an Ethernet header are not included (BPF_PROG_RUN
// refuses them).
func SampleFrames() []Sample {
	var out []Sample
	add := func(name string, b []byte) { out = append(out, Sample{name, b}) }
	addrs := []struct {
		name     string
		src, dst netip.Addr
	}{
		{"v4", Src4, Dst4},
		{"v6", Src6, Dst6},
	}
	vlans := [][]uint16{nil, {100}, {100, 200}}
	for _, vl := range vlans {
		vname := fmt.Sprintf("vlan%d", len(vl))
		add("arp-"+vname, BuildFrame(FrameSpec{VLANs: vl, EtherType: 0x0806}))
		for _, a := range addrs {
			icmp := uint8(1)
			if a.name == "v6" {
				icmp = 58
			}
			for _, proto := range []uint8{17, 6, icmp, 47} {
				base := FrameSpec{VLANs: vl, Src: a.src, Dst: a.dst, Proto: proto, Sport: 1000 + uint16(proto), Dport: 53, Payload: 18}
				variants := []struct {
					name string
					f    func(*FrameSpec)
				}{
					{"", func(*FrameSpec) {}},
					{"-firstfrag", func(s *FrameSpec) { s.MoreFrags = true }},
					{"-laterfrag", func(s *FrameSpec) { s.FragOffset = 100 }},
				}
				if a.name == "v4" {
					variants = append(variants, struct {
						name string
						f    func(*FrameSpec)
					}{"-options", func(s *FrameSpec) { s.OptionWords = 10 }})
				} else {
					variants = append(variants, struct {
						name string
						f    func(*FrameSpec)
					}{"-ext", func(s *FrameSpec) { s.ExtHeaders = []uint8{0, 43, 60} }}, struct {
						name string
						f    func(*FrameSpec)
					}{"-ext6", func(s *FrameSpec) { s.ExtHeaders = []uint8{0, 60, 43, 44, 60, 60} }})
				}
				for _, v := range variants {
					s := base
					v.f(&s)
					name := fmt.Sprintf("%s-%s-%s%s", a.name, protoNames[proto], vname, v.name)
					full := BuildFrame(s)
					add(name, full)
					// Cut short inside each header: malformed, or (past the
					// headers) still well-formed.
					for _, cut := range []int{15, 17, 19, 25, 33, 37, 41, 45, 53, 57, 61, 70, 75, 90, 100, 105, 110} {
						if cut < len(full) {
							add(fmt.Sprintf("%s-cut%d", name, cut), full[:cut])
						}
					}
				}
			}
		}
	}
	v4, v6 := addrs[0], addrs[1]
	add("three-vlans", BuildFrame(FrameSpec{VLANs: []uint16{1, 2, 3}, Src: v4.src, Dst: v4.dst, Proto: 17}))
	add("ihl4", BuildFrame(FrameSpec{IHL: 4, Src: v4.src, Dst: v4.dst, Proto: 17}))
	add("ihl0", BuildFrame(FrameSpec{IHL: 16, Src: v4.src, Dst: v4.dst, Proto: 17}))
	add("ihl15-short", BuildFrame(FrameSpec{IHL: 15, Src: v4.src, Dst: v4.dst, Proto: 17}))
	add("bad-version4", BuildFrame(FrameSpec{BadVersion: true, Src: v4.src, Dst: v4.dst, Proto: 17}))
	add("bad-version6", BuildFrame(FrameSpec{BadVersion: true, Src: v6.src, Dst: v6.dst, Proto: 17}))
	add("seven-ext", BuildFrame(FrameSpec{ExtHeaders: []uint8{0, 60, 60, 60, 60, 60, 43}, Src: v6.src, Dst: v6.dst, Proto: 17}))
	add("ethernet-only", BuildFrame(FrameSpec{Src: v4.src, Dst: v4.dst, Proto: 17})[:14])
	add("vlan-ethernet-only", BuildFrame(FrameSpec{VLANs: []uint16{5}, Src: v6.src, Dst: v6.dst, Proto: 17})[:18])
	return out
}
