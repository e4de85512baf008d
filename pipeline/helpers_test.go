package pipeline

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xdpipe/xdpipe/internal/frame"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
	"github.com/xdpipe/xdpipe/xsk/xsktest"
)

// newUmem makes a UMEM of frames frames of frameSize bytes, whose sockets'
// fill and completion rings have ring entries, closed when the test ends.
// It is plain anonymous memory: unprivileged tests use it with xsktest's
// fake kernel, or as a Memory on its own.
func newUmem(tb testing.TB, frames, frameSize, ring uint32) *xsk.Umem {
	tb.Helper()
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: frames, FrameSize: frameSize, FillSize: ring, CompletionSize: ring})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := u.Close(); err != nil {
			tb.Error(err)
		}
	})
	return u
}

// allocFrame takes one frame off u's free stack and returns its address.
func allocFrame(tb testing.TB, u *xsk.Umem) uint64 {
	tb.Helper()
	var a [1]uint64
	if u.Alloc(a[:]) != 1 {
		tb.Fatal("umem exhausted")
	}
	return a[0]
}

// put copies a frame into a fresh UMEM frame at the data offset, where the
// kernel writes received data, and returns its descriptor.
func put(tb testing.TB, u *xsk.Umem, frame []byte) Desc {
	tb.Helper()
	d := Desc{Addr: allocFrame(tb, u) + u.DataOffset(), Len: uint32(len(frame))}
	copy(u.Bytes(d), frame)
	return d
}

// burstOf loads frames into a fresh burst over a fresh UMEM.
func burstOf(tb testing.TB, frames ...[]byte) (*Burst, *xsk.Umem) {
	tb.Helper()
	u := newUmem(tb, uint32(len(frames)+8), 2048, 64)
	b, err := NewBurst(len(frames))
	if err != nil {
		tb.Fatal(err)
	}
	descs := make([]Desc, len(frames))
	for i, f := range frames {
		descs[i] = put(tb, u, f)
	}
	b.Load(u, 0, 3, descs, 12345)
	return b, u
}

var (
	macA = net.HardwareAddr{0x02, 0x58, 0x44, 0x50, 0x00, 0x0a}
	macB = net.HardwareAddr{0x02, 0x58, 0x44, 0x50, 0x00, 0x0b}
	ipA  = netip.MustParseAddr("198.18.0.1")
	ipB  = netip.MustParseAddr("198.18.0.2")
	ip6A = netip.MustParseAddr("2001:2::1")
	ip6B = netip.MustParseAddr("2001:2::2")
)

type frameSpec struct {
	v6       bool
	vlan     uint16 // 0: untagged
	proto    layers.IPProtocol
	sport    uint16
	dport    uint16
	ttl      uint8
	tos      uint8
	payload  int
	data     []byte // the payload's bytes, if set (payload is then ignored)
	src, dst netip.Addr
}

// buildFrame serializes a frame with gopacket (the reference we check our
// parser and rewrites against).
func buildFrame(tb testing.TB, s frameSpec) []byte {
	tb.Helper()
	if s.proto == 0 {
		s.proto = layers.IPProtocolUDP
	}
	if s.ttl == 0 {
		s.ttl = 64
	}
	if !s.src.IsValid() {
		s.src, s.dst = ipA, ipB
		if s.v6 {
			s.src, s.dst = ip6A, ip6B
		}
	}
	var ls []gopacket.SerializableLayer
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	if s.v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
	}
	ls = append(ls, eth)
	if s.vlan != 0 {
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: s.vlan & 0xfff, Priority: uint8(s.vlan >> 13), Type: eth.EthernetType})
		eth.EthernetType = layers.EthernetTypeDot1Q
	}
	var nl gopacket.NetworkLayer
	if s.v6 {
		ip := &layers.IPv6{Version: 6, HopLimit: s.ttl, TrafficClass: s.tos, NextHeader: s.proto, SrcIP: s.src.AsSlice(), DstIP: s.dst.AsSlice()}
		ls, nl = append(ls, ip), ip
	} else {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: s.ttl, TOS: s.tos, Protocol: s.proto, SrcIP: s.src.AsSlice(), DstIP: s.dst.AsSlice(), Flags: layers.IPv4DontFragment}
		ls, nl = append(ls, ip), ip
	}
	switch s.proto {
	case layers.IPProtocolUDP:
		u := &layers.UDP{SrcPort: layers.UDPPort(s.sport), DstPort: layers.UDPPort(s.dport)}
		u.SetNetworkLayerForChecksum(nl)
		ls = append(ls, u)
	case layers.IPProtocolTCP:
		t := &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport), SYN: true, Window: 1024}
		t.SetNetworkLayerForChecksum(nl)
		ls = append(ls, t)
	}
	data := s.data
	if data == nil {
		data = make([]byte, s.payload)
	}
	ls = append(ls, gopacket.Payload(data))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func udp4(tb testing.TB, dport uint16) []byte {
	return buildFrame(tb, frameSpec{sport: 40000, dport: dport, payload: 18})
}

// portFilter is an allow list of UDP destination ports in the steering rule
// language: rule i redirects (keeps) UDP port ports[i], everything else is
// dropped.
func portFilter(tb testing.TB, ports ...uint16) *Filter {
	tb.Helper()
	set := &rules.Set{Default: rules.ActionDrop, Malformed: rules.ActionDrop}
	for i, p := range ports {
		set.Rules = append(set.Rules, rules.Rule{Priority: uint32(i + 1), Fields: rules.FieldProto | rules.FieldDport,
			Proto: frame.ProtoUDP, Dport: rules.PortRange{Lo: p, Hi: p}, Action: rules.ActionRedirect})
	}
	m, err := NewRuleMatcher(set)
	if err != nil {
		tb.Fatal(err)
	}
	f, err := NewFilter(m)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

func newTestLogger(w *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}

type netipAddr = netip.Addr

var netipAddrFromSlice = netip.AddrFromSlice

// macSwapWorker is a worker on one fake port "a" of mem, with 64-entry
// rings, that swaps MACs and sends every packet back, with drain as its
// DrainInterval.
func macSwapWorker(t *testing.T, mem *xsk.Umem, drain time.Duration) (*Worker, *xsk.Socket, *xsktest.Kernel) {
	t.Helper()
	port, k := newPort(t, mem, nil, 64, 64)
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"a", port}}, Mem: mem, Stages: []Stage{&MacSwap{}}, DrainInterval: drain})
	if err != nil {
		t.Fatal(err)
	}
	return w, port, k
}
