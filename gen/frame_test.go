package gen

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	testSrcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	testDstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

func testConfig(p Proto, size int) Config {
	c := Config{Proto: p, Size: size, SrcMAC: testSrcMAC, DstMAC: testDstMAC,
		SrcIP: netip.MustParseAddr("198.18.0.1"), DstIP: netip.MustParseAddr("198.18.0.2")}
	if p.v6() {
		c.SrcIP, c.DstIP = netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::2")
	}
	return c
}

// checkFrame decodes frame with gopacket, checks that the checksums gopacket
// computes are the ones in the frame, and returns the payload.
func checkFrame(t *testing.T, frame []byte) Payload {
	t.Helper()
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if el := pkt.ErrorLayer(); el != nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	var net gopacket.NetworkLayer
	var ls []gopacket.SerializableLayer
	for _, l := range pkt.Layers() {
		switch l := l.(type) {
		case *layers.Ethernet:
			ls = append(ls, l)
		case *layers.IPv4:
			net = l
			ls = append(ls, l)
		case *layers.IPv6:
			net = l
			ls = append(ls, l)
		case *layers.UDP:
			if err := l.SetNetworkLayerForChecksum(net); err != nil {
				t.Fatal(err)
			}
			ls = append(ls, l, gopacket.Payload(l.Payload))
		case *layers.TCP:
			if !l.SYN || l.ACK || l.RST || l.FIN {
				t.Fatalf("TCP flags: want SYN only, got %+v", l)
			}
			if err := l.SetNetworkLayerForChecksum(net); err != nil {
				t.Fatal(err)
			}
			ls = append(ls, l, gopacket.Payload(l.Payload))
		}
	}
	if len(ls) != 4 {
		t.Fatalf("decoded %d layers (%v), want Ethernet, IP, L4, payload", len(ls), pkt.Layers())
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, ls...); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), frame) {
		t.Fatalf("frame differs from gopacket's re-serialisation with computed checksums:\n got %x\nwant %x", frame, buf.Bytes())
	}
	pl, ok := Parse(frame)
	if !ok {
		t.Fatal("Parse did not find the payload")
	}
	return pl
}

func TestTemplatesDecodeWithValidChecksums(t *testing.T) {
	for _, p := range []Proto{UDP4, UDP6, TCP4SYN, TCP6SYN} {
		for _, size := range []int{MinSize(p), 128, 1500, 9000} {
			for _, vary := range []Vary{VarySrcPort, VarySrcAddr} {
				c := testConfig(p, size)
				c.Flows, c.Vary = 1000, vary
				tp, err := NewTemplate(c)
				if err != nil {
					t.Fatal(err)
				}
				if tp.Len() != size {
					t.Fatalf("%v: len %d want %d", p, tp.Len(), size)
				}
				checkFrame(t, tp.Bytes())
				f := bytes.Clone(tp.Bytes())
				for _, seq := range []uint64{0, 1, 999, 1000, 12345678901, ^uint64(0)} {
					ts := int64(seq * 7919)
					tp.Stamp(f, seq, ts)
					pl := checkFrame(t, f)
					if pl.Seq != seq || pl.Sent != ts {
						t.Fatalf("%v %d: payload %+v, want seq %d ts %d", p, size, pl, seq, ts)
					}
					if err := tp.Verify(f); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
}

func TestFlowsVary(t *testing.T) {
	for _, vary := range []Vary{VarySrcPort, VarySrcAddr} {
		c := testConfig(UDP6, 200)
		c.Flows, c.Vary = 4, vary
		tp, _ := NewTemplate(c)
		f := bytes.Clone(tp.Bytes())
		seen := map[string]bool{}
		for seq := range uint64(8) {
			tp.Stamp(f, seq, 0)
			pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
			ip := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
			udp := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
			seen[ip.SrcIP.String()+udp.SrcPort.String()] = true
		}
		if len(seen) != 4 {
			t.Fatalf("%v: %d distinct flows, want 4: %v", vary, len(seen), seen)
		}
	}
}

func TestBadConfig(t *testing.T) {
	for name, c := range map[string]Config{
		"small":    testConfig(UDP6, 64),
		"big":      testConfig(UDP4, 9001),
		"family":   func() Config { c := testConfig(UDP4, 0); c.Proto = UDP6; return c }(),
		"mac":      func() Config { c := testConfig(UDP4, 0); c.DstMAC = nil; return c }(),
		"flows":    func() Config { c := testConfig(UDP4, 0); c.Flows = 70000; return c }(),
		"noaddr":   func() Config { c := testConfig(UDP4, 0); c.SrcIP = netip.Addr{}; return c }(),
		"badproto": func() Config { c := testConfig(UDP4, 0); c.Proto = 9; return c }(),
	} {
		if _, err := NewTemplate(c); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: err %v, want ErrBadConfig", name, err)
		}
	}
	if _, err := ParseProto("sctp"); err == nil {
		t.Error("ParseProto(sctp) did not fail")
	}
}

func FuzzParse(f *testing.F) {
	tp, _ := NewTemplate(testConfig(TCP4SYN, 100))
	f.Add(tp.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) { Parse(b) })
}

// BenchmarkParse: the payload of a 64-byte IPv4/UDP frame.
func BenchmarkParse(b *testing.B) {
	tp, _ := NewTemplate(testConfig(UDP4, 64))
	f := tp.Bytes()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := Parse(f); !ok {
			b.Fatal("no payload")
		}
	}
}
