package pipeline

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/xdpipe/xdpipe/internal/frame"
)

// sockperfMsg is a sockperf message of 64 bytes: sequence number 1, the
// given flags, length 64.
func sockperfMsg(flags uint16) []byte {
	m := make([]byte, 64-frame.EthLen-frame.IPv4MinLen-frame.UDPLen)
	binary.BigEndian.PutUint64(m[0:8], 1)
	binary.BigEndian.PutUint16(m[8:10], flags)
	binary.BigEndian.PutUint32(m[10:14], 64)
	return m
}

// reply is the frame reflect must make of the request spec s: addresses
// and ports swapped, the payload as given, checksums computed (gopacket).
func reply(t *testing.T, s frameSpec, data []byte) []byte {
	t.Helper()
	s.src, s.dst = s.dst, s.src
	s.sport, s.dport = s.dport, s.sport
	s.data = data
	f := buildFrame(t, s)
	swapMACs(f)
	return f
}

// partialSum puts in f's UDP checksum what a veth hands over for a local
// socket's datagram with checksum offload: the pseudo-header's sum only.
func partialSum(t *testing.T, f []byte) {
	t.Helper()
	var h frame.Headers
	if r := frame.Parse(f, &h); r != frame.ReasonNone {
		t.Fatal(r)
	}
	ip, u := f[h.L3:h.L4], f[h.L4:]
	addrs := ip[8:40]
	if h.Family == 4 {
		addrs = ip[12:20]
	}
	ph := [4]byte{0, frame.ProtoUDP, u[4], u[5]}
	binary.NativeEndian.PutUint16(u[6:8], frame.Fold(frame.Sum(addrs)+frame.Sum(ph[:])))
}

func TestReflect(t *testing.T) {
	v4 := frameSpec{sport: 40000, dport: 11111, src: ipA, dst: ipB}
	v6 := frameSpec{v6: true, sport: 40000, dport: 11111, src: ip6A, dst: ip6B}
	odd := []byte("an odd-length payload, 33 bytes.!")
	for _, c := range []struct {
		name     string
		spec     frameSpec
		data     []byte // request payload
		edit     func(t *testing.T, f []byte)
		sockperf bool
		want     []byte // reply payload; nil: not reflected
		noSum    bool   // the reply keeps an IPv4 datagram's absent checksum
		absorbed bool
	}{
		{name: "ipv4", spec: v4, data: odd, want: odd},
		{name: "ipv6", spec: v6, data: odd, want: odd},
		{name: "ipv4 partial checksum", spec: v4, data: odd, edit: partialSum, want: odd},
		{name: "ipv6 partial checksum", spec: v6, data: odd, edit: partialSum, want: odd},
		{name: "ipv4 no checksum", spec: v4, data: odd, edit: func(_ *testing.T, f []byte) {
			binary.BigEndian.PutUint16(f[frame.EthLen+frame.IPv4MinLen+6:], 0)
		}, want: odd, noSum: true},
		{name: "bad checksum", spec: v4, data: odd, edit: func(_ *testing.T, f []byte) { f[len(f)-1] ^= 1 }},
		{name: "tcp", spec: frameSpec{proto: layers.IPProtocolTCP, sport: 1, dport: 2}},
		{name: "truncated udp length", spec: v4, data: odd, edit: func(_ *testing.T, f []byte) {
			binary.BigEndian.PutUint16(f[frame.EthLen+frame.IPv4MinLen+4:], 200)
		}},
		{name: "sockperf ping", spec: v4, data: sockperfMsg(3), sockperf: true, want: sockperfMsg(2)},
		{name: "sockperf ping, partial checksum", spec: v6, data: sockperfMsg(3), edit: partialSum, sockperf: true, want: sockperfMsg(2)},
		{name: "sockperf under-load, no reply asked", spec: v4, data: sockperfMsg(1), sockperf: true, absorbed: true},
		{name: "sockperf server's message", spec: v4, data: sockperfMsg(2), sockperf: true},
		{name: "sockperf too short", spec: v4, data: []byte("short"), sockperf: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := c.spec
			s.data = c.data
			f := buildFrame(t, s)
			if c.edit != nil {
				c.edit(t, f)
			}
			in := bytes.Clone(f)
			b, _ := burstOf(t, f)
			r := &Reflect{Sockperf: c.sockperf}
			r.Process(b)
			p := &b.Pkts[0]
			switch {
			case c.want != nil:
				if p.Verdict != VerdictTransmit || r.Reflected.Load() != 1 {
					t.Fatalf("verdict %v, reflected %d: want it sent back", p.Verdict, r.Reflected.Load())
				}
				want := reply(t, s, c.want)
				if c.noSum {
					binary.BigEndian.PutUint16(want[frame.EthLen+frame.IPv4MinLen+6:], 0)
				}
				if !bytes.Equal(p.Data, want) {
					t.Fatalf("reply\n% x\nwant\n% x", p.Data, want)
				}
			case c.absorbed:
				if p.Verdict != VerdictDrop || r.Absorbed.Load() != 1 || r.Refused.Load() != 0 {
					t.Fatalf("verdict %v, absorbed %d, refused %d: want absorbed", p.Verdict, r.Absorbed.Load(), r.Refused.Load())
				}
			default:
				if p.Verdict != VerdictDrop || r.Refused.Load() != 1 {
					t.Fatalf("verdict %v, refused %d: want refused", p.Verdict, r.Refused.Load())
				}
				if !bytes.Equal(p.Data, in) {
					t.Fatalf("a refused packet was changed:\n% x\nwas\n% x", p.Data, in)
				}
			}
		})
	}
}

func TestReflectAllocatesNothing(t *testing.T) {
	frames := make([][]byte, DefaultBurstSize)
	for i := range frames {
		frames[i] = udp4(t, uint16(i))
	}
	b, _ := burstOf(t, frames...)
	r := &Reflect{}
	if n := testing.AllocsPerRun(100, func() {
		for i := range b.Pkts {
			b.Pkts[i].Verdict = VerdictKeep
		}
		r.Process(b)
	}); n != 0 {
		t.Fatalf("%v allocations per burst", n)
	}
}

func BenchmarkStageReflect(b *testing.B) { benchStage(b, &Reflect{}) }
