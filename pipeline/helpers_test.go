package pipeline

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xdpipe/xdpipe/internal/frame"
	"github.com/xdpipe/xdpipe/rules"
)

// fakeMem is a UMEM stand-in: a plain byte region cut into frames, with a
// free stack. It is what the worker's Memory sees in unprivileged tests.
type fakeMem struct {
	mu        sync.Mutex
	region    []byte
	frameSize uint64
	headroom  uint64
	free      []uint64
	freed     int // frames returned by Free
	total     int
}

func newFakeMem(frames int, frameSize uint64) *fakeMem {
	m := &fakeMem{region: make([]byte, uint64(frames)*frameSize), frameSize: frameSize, headroom: 256, free: make([]uint64, 0, frames), total: frames}
	for i := frames - 1; i >= 0; i-- {
		m.free = append(m.free, uint64(i)*frameSize)
	}
	return m
}

func (m *fakeMem) Frame(addr uint64) []byte {
	base := addr - addr%m.frameSize
	return m.region[base : base+m.frameSize : base+m.frameSize]
}

func (m *fakeMem) Free(addrs []uint64) {
	m.mu.Lock()
	for _, a := range addrs {
		m.free = append(m.free, a-a%m.frameSize)
	}
	m.freed += len(addrs)
	m.mu.Unlock()
}

func (m *fakeMem) alloc() (uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.free) == 0 {
		return 0, false
	}
	a := m.free[len(m.free)-1]
	m.free = m.free[:len(m.free)-1]
	return a, true
}

// put copies a frame into a fresh UMEM frame after the headroom and returns
// its descriptor.
func (m *fakeMem) put(tb testing.TB, frame []byte) Desc {
	tb.Helper()
	a, ok := m.alloc()
	if !ok {
		tb.Fatal("fake umem exhausted")
	}
	a += m.headroom
	copy(m.region[a:], frame)
	return Desc{Addr: a, Len: uint32(len(frame))}
}

// burstOf loads frames into a fresh burst over a fake UMEM.
func burstOf(tb testing.TB, frames ...[]byte) (*Burst, *fakeMem) {
	tb.Helper()
	m := newFakeMem(len(frames)+8, 2048)
	b, err := NewBurst(len(frames))
	if err != nil {
		tb.Fatal(err)
	}
	descs := make([]Desc, len(frames))
	for i, f := range frames {
		descs[i] = m.put(tb, f)
	}
	b.Load(m, 0, 3, descs, 12345)
	return b, m
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
