package pipeline

import (
	"bytes"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name string
		spec frameSpec
	}{
		{"udp4", frameSpec{sport: 1000, dport: 53, ttl: 9, tos: 0xb8}},
		{"tcp4 vlan", frameSpec{proto: layers.IPProtocolTCP, sport: 1, dport: 443, vlan: 0x2064}},
		{"udp6", frameSpec{v6: true, sport: 5, dport: 4789, ttl: 3, tos: 0x20}},
		{"icmp4", frameSpec{proto: layers.IPProtocolICMPv4, payload: 8}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := buildFrame(t, c.spec)
			var h Headers
			if err := h.Parse(f); err != nil {
				t.Fatal(err)
			}
			pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
			nl := pkt.NetworkLayer()
			if nl == nil {
				t.Fatal("gopacket found no network layer")
			}
			if h.Src.String() != nl.NetworkFlow().Src().String() || h.Dst.String() != nl.NetworkFlow().Dst().String() {
				t.Errorf("addrs %v %v, gopacket %v", h.Src, h.Dst, nl.NetworkFlow())
			}
			if tl := pkt.TransportLayer(); tl != nil {
				if h.SrcPort != c.spec.sport || h.DstPort != c.spec.dport {
					t.Errorf("ports %d %d, want %d %d", h.SrcPort, h.DstPort, c.spec.sport, c.spec.dport)
				}
				if !bytes.Equal(f[h.L4:h.L4+4], tl.LayerContents()[:4]) {
					t.Errorf("L4 offset %d", h.L4)
				}
			}
			if h.Proto != uint8(c.spec.proto) && c.spec.proto != 0 {
				t.Errorf("proto %d, want %d", h.Proto, c.spec.proto)
			}
			if c.spec.ttl != 0 && h.TTL != c.spec.ttl || h.TOS != c.spec.tos {
				t.Errorf("ttl %d tos %#x, want %d %#x", h.TTL, h.TOS, c.spec.ttl, c.spec.tos)
			}
			if c.spec.vlan != 0 && (h.VLANs != 1 || h.VLAN != c.spec.vlan) {
				t.Errorf("vlan %d %#x, want %#x", h.VLANs, h.VLAN, c.spec.vlan)
			}
		})
	}
}

func TestParseBad(t *testing.T) {
	f := udp4(t, 53)
	var h Headers
	for n := 0; n < 14+20+4; n++ {
		if err := h.Parse(f[:n]); err == nil {
			t.Errorf("truncated to %d: no error", n)
		}
	}
	g := append([]byte(nil), f...)
	g[14] = 0x41 // IHL 1
	if err := h.Parse(g); err != ErrMalformed {
		t.Errorf("bad IHL: %v", err)
	}
}

// TestParseAllocs proves our parser allocates nothing, on good and bad frames.
func TestParseAllocs(t *testing.T) {
	f := udp4(t, 53)
	f6 := buildFrame(t, frameSpec{v6: true, dport: 1})
	var h Headers
	if a := testing.AllocsPerRun(1000, func() {
		_ = h.Parse(f)
		_ = h.Parse(f6)
		_ = h.Parse(f[:20])
	}); a != 0 {
		t.Fatalf("Parse allocates %v per run", a)
	}
}

// TestDecodingLayerParserAllocs records the measurement behind the choice of
// our own parser: gopacket's DecodingLayerParser with preallocated layers is
// allocation-free on a well-formed frame but allocates on a truncated one.
func TestDecodingLayerParserAllocs(t *testing.T) {
	var (
		eth  layers.Ethernet
		d1q  layers.Dot1Q
		ip4  layers.IPv4
		ip6  layers.IPv6
		udp  layers.UDP
		tcp  layers.TCP
		pl   gopacket.Payload
		dec  = make([]gopacket.LayerType, 0, 8)
		good = udp4(t, 40001)
	)
	p := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &d1q, &ip4, &ip6, &udp, &tcp, &pl)
	p.IgnoreUnsupported = true
	okAllocs := testing.AllocsPerRun(1000, func() { _ = p.DecodeLayers(good, &dec) })
	badAllocs := testing.AllocsPerRun(1000, func() { _ = p.DecodeLayers(good[:20], &dec) })
	t.Logf("DecodingLayerParser allocs/frame: well-formed %v, truncated %v", okAllocs, badAllocs)
	if okAllocs != 0 {
		t.Errorf("DecodingLayerParser allocates %v on a good frame (expected 0 with gopacket v1.7.7)", okAllocs)
	}
	if badAllocs == 0 {
		t.Logf("DecodingLayerParser no longer allocates on truncated frames: reconsider the own parser")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(udp4(f, 53))
	f.Add(buildFrame(f, frameSpec{v6: true, vlan: 7, proto: layers.IPProtocolTCP}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Headers
		if h.Parse(b) == nil && h.L4 != 0 && int(h.L4) > len(b) {
			t.Fatalf("L4 offset %d past frame of %d", h.L4, len(b))
		}
	})
}

func BenchmarkParseOwn(b *testing.B) {
	f := udp4(b, 53)
	var h Headers
	b.ReportAllocs()
	for b.Loop() {
		_ = h.Parse(f)
	}
}

func BenchmarkParseDecodingLayerParser(b *testing.B) {
	var (
		eth layers.Ethernet
		d1q layers.Dot1Q
		ip4 layers.IPv4
		ip6 layers.IPv6
		udp layers.UDP
		tcp layers.TCP
		pl  gopacket.Payload
		dec = make([]gopacket.LayerType, 0, 8)
	)
	p := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &d1q, &ip4, &ip6, &udp, &tcp, &pl)
	p.IgnoreUnsupported = true
	f := udp4(b, 40001)
	b.ReportAllocs()
	for b.Loop() {
		_ = p.DecodeLayers(f, &dec)
	}
}
