package frame_test

import (
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/xdpipe/xdpipe/internal/frame"
	"github.com/xdpipe/xdpipe/internal/frame/frametest"
)

// TestLimitsAreTheSteeringProgramsLimits: the parser's limits are the
// defines of bpf/parse.h (the steering program's parser), so both sides
// call the same frames malformed.
func TestLimitsAreTheSteeringProgramsLimits(t *testing.T) {
	src, err := os.ReadFile("../../bpf/parse.h")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"MAX_VLANS": frame.MaxVLANs, "MAX_EXT_HDRS": frame.MaxExtHeaders} {
		m := regexp.MustCompile(`(?m)^#define ` + name + ` (\d+)$`).FindSubmatch(src)
		if m == nil {
			t.Fatalf("parse.h defines no %s", name)
		}
		if got, _ := strconv.Atoi(string(m[1])); got != want {
			t.Errorf("parse.h %s = %d, parser %d", name, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	cases := []struct {
		name string
		spec frametest.FrameSpec
		cut  int
		want frame.Headers
		fail frame.Reason
	}{
		{name: "udp4", spec: frametest.FrameSpec{Src: frametest.Src4, Dst: frametest.Dst4, Proto: 17, Sport: 1000, Dport: 53, Payload: 4},
			want: frame.Headers{EtherType: 0x0800, Family: 4, Proto: 17, TTL: 64, L3: 14, L4: 34, Src: frametest.Src4, Dst: frametest.Dst4, HasPorts: true, SrcPort: 1000, DstPort: 53}},
		{name: "tcp6-vlan-ext", spec: frametest.FrameSpec{VLANs: []uint16{7}, Src: frametest.Src6, Dst: frametest.Dst6, Proto: 6, Sport: 1, Dport: 443, ExtHeaders: []uint8{0, 60}},
			want: frame.Headers{VLANs: 1, VLAN: 7, EtherType: 0x86dd, Family: 6, Proto: 6, TTL: 64, L3: 18, L4: 18 + 40 + 16, Src: frametest.Src6, Dst: frametest.Dst6, HasPorts: true, SrcPort: 1, DstPort: 443}},
		{name: "udp4-later-fragment", spec: frametest.FrameSpec{Src: frametest.Src4, Dst: frametest.Dst4, Proto: 17, FragOffset: 10},
			want: frame.Headers{EtherType: 0x0800, Family: 4, Proto: 17, TTL: 64, L3: 14, Src: frametest.Src4, Dst: frametest.Dst4, Fragment: true}},
		{name: "tcp-header-cut-at-20", spec: frametest.FrameSpec{Src: frametest.Src4, Dst: frametest.Dst4, Proto: 6}, cut: 14 + 20 + 19, fail: frame.ReasonTruncL4},
		{name: "three-vlans", spec: frametest.FrameSpec{VLANs: []uint16{1, 2, 3}, Src: frametest.Src4, Dst: frametest.Dst4, Proto: 17}, fail: frame.ReasonTooManyVLANs},
		{name: "six-ext", spec: frametest.FrameSpec{Src: frametest.Src6, Dst: frametest.Dst6, Proto: 17, ExtHeaders: []uint8{0, 60, 60, 60, 60, 43}},
			want: frame.Headers{EtherType: 0x86dd, Family: 6, Proto: 17, TTL: 64, L3: 14, L4: 14 + 40 + 48, Src: frametest.Src6, Dst: frametest.Dst6, HasPorts: true}},
		{name: "seven-ext", spec: frametest.FrameSpec{Src: frametest.Src6, Dst: frametest.Dst6, Proto: 17, ExtHeaders: []uint8{0, 60, 60, 60, 60, 60, 43}}, fail: frame.ReasonTooManyExt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := frametest.BuildFrame(c.spec)
			if c.cut > 0 {
				b = b[:c.cut]
			}
			var h frame.Headers
			r := frame.Parse(b, &h)
			if r != c.fail {
				t.Fatalf("reason %v, want %v", r, c.fail)
			}
			if r == frame.ReasonNone && h != c.want {
				t.Fatalf("\n got %+v\nwant %+v", h, c.want)
			}
		})
	}
}

// TestParseAllocs: no allocation, on good and on malformed frames.
func TestParseAllocs(t *testing.T) {
	var frames [][]byte
	for _, s := range frametest.SampleFrames() {
		frames = append(frames, s.Frame)
	}
	var h frame.Headers
	if a := testing.AllocsPerRun(100, func() {
		for _, f := range frames {
			frame.Parse(f, &h)
		}
	}); a != 0 {
		t.Fatalf("Parse allocates %v per run", a)
	}
}

// FuzzParse: the parser never panics (a read past the frame would), and
// what it returns is self-consistent. Seeds: every sample frame. Run:
// go test ./internal/frame/ -run '^$' -fuzz FuzzParse
func FuzzParse(f *testing.F) {
	for _, s := range frametest.SampleFrames() {
		f.Add(s.Frame)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var h frame.Headers
		r := frame.Parse(b, &h)
		if r >= frame.NumReasons {
			t.Fatalf("reason %d out of range", r)
		}
		if r != frame.ReasonNone {
			return
		}
		if h.VLANs > frame.MaxVLANs || h.EtherType == frame.EtherTypeVLAN || h.EtherType == frame.EtherTypeQinQ {
			t.Fatalf("VLANs %d, EtherType %#x", h.VLANs, h.EtherType)
		}
		hdr := frame.EthLen + frame.VLANLen*int(h.VLANs)
		switch h.Family {
		case 0:
			if h.Src.IsValid() || h.HasPorts || h.L3 != 0 || h.L4 != 0 || h.EtherType == frame.EtherTypeIPv4 || h.EtherType == frame.EtherTypeIPv6 {
				t.Fatalf("non-IP headers %+v", h)
			}
			return
		case 4:
			if h.EtherType != frame.EtherTypeIPv4 || !h.Src.Is4() || !h.Dst.Is4() || int(h.L3) != hdr || int(h.L4) > len(b) {
				t.Fatalf("IPv4 headers %+v", h)
			}
		case 6:
			if h.EtherType != frame.EtherTypeIPv6 || !h.Src.Is6() || !h.Dst.Is6() || int(h.L3) != hdr {
				t.Fatalf("IPv6 headers %+v", h)
			}
		default:
			t.Fatalf("family %d", h.Family)
		}
		if h.Fragment != (h.L4 == 0) {
			t.Fatalf("fragment %v with L4 offset %d", h.Fragment, h.L4)
		}
		need := 0
		switch {
		case h.Fragment:
		case h.Proto == frame.ProtoUDP:
			need = frame.UDPLen
		case h.Proto == frame.ProtoTCP:
			need = frame.TCPMinLen
		}
		if int(h.L4)+need > len(b) {
			t.Fatalf("L4 header at %d (%d bytes) past frame of %d", h.L4, need, len(b))
		}
		if h.HasPorts != (!h.Fragment && (h.Proto == frame.ProtoUDP || h.Proto == frame.ProtoTCP)) {
			t.Fatalf("ports %v for protocol %d, fragment %v", h.HasPorts, h.Proto, h.Fragment)
		}
	})
}

// BenchmarkParse: one IPv4/UDP frame.
func BenchmarkParse(b *testing.B) {
	f := frametest.BuildFrame(frametest.FrameSpec{Src: frametest.Src4, Dst: frametest.Dst4, Proto: 17, Sport: 1, Dport: 53, Payload: 18})
	var h frame.Headers
	b.ReportAllocs()
	for b.Loop() {
		if frame.Parse(f, &h) != frame.ReasonNone {
			b.Fatal("malformed")
		}
	}
}
