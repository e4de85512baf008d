package main

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
)

// TestSteerEndToEnd: on a veth, with the steering program on the receiving
// end, a flow matching a redirect rule reaches the AF_XDP socket, a flow
// matching a drop rule is dropped, and other flows reach a UDP socket
// through the kernel stack; each counted exactly.
func TestSteerEndToEnd(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	ib := p.B.Ifindex(t)
	s, err := bpf.LoadSteer(bpf.SteerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	dst := netip.PrefixFrom(netip.AddrFrom4([4]byte(p.B.IP)), 32)
	set := &rules.Set{Default: rules.ActionPass, Rules: []rules.Rule{
		{Priority: 1, Name: "to-xsk", Fields: rules.FieldProto | rules.FieldDst | rules.FieldDport, Proto: 17, Dst: dst,
			Dport: rules.PortRange{Lo: 7001, Hi: 7001}, Action: rules.ActionRedirect},
		{Priority: 2, Name: "drop", Fields: rules.FieldProto | rules.FieldDport, Proto: 17,
			Dport: rules.PortRange{Lo: 7002, Hi: 7002}, Action: rules.ActionDrop},
		{Priority: 3, Name: "stack", Fields: rules.FieldIfindex | rules.FieldProto | rules.FieldDport, Ifindex: uint32(ib), Proto: 17,
			Dport: rules.PortRange{Lo: 7003, Hi: 7003}, Action: rules.ActionPass},
	}}
	if err := s.Apply(set); err != nil {
		t.Fatal(err)
	}
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 1024, FrameSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	var sock *xsk.Socket
	var rx net.PacketConn
	p.B.NS.MustDo(t, func() (err error) {
		if _, err = s.Attach(ib, bpf.AttachAuto); err != nil {
			return err
		}
		if sock, err = xsk.NewSocket(u, ib, 0, xsk.SocketOptions{Prefill: true}); err != nil {
			return err
		}
		if err = s.Register(0, sock.FD()); err != nil {
			return err
		}
		rx, err = net.ListenPacket("udp4", net.JoinHostPort(p.B.IP.String(), "7003"))
		return err
	})
	t.Cleanup(func() { sock.Close() })
	t.Cleanup(func() { rx.Close() })

	counts := map[int]int{7001: 300, 7002: 200, 7003: 100}
	p.A.NS.MustDo(t, func() error {
		for port, n := range counts {
			c, err := net.Dial("udp4", net.JoinHostPort(p.B.IP.String(), strconv.Itoa(port)))
			if err != nil {
				return err
			}
			for range n {
				if _, err := c.Write([]byte("steer")); err != nil {
					c.Close()
					return err
				}
			}
			c.Close()
		}
		return nil
	})

	// The AF_XDP socket: exactly the 7001 flow.
	descs := make([]xsk.Desc, 64)
	got := map[uint16]int{}
	total := 0
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		n := sock.Receive(descs)
		if n == 0 {
			sock.Refill()
			sock.Wait(100 * time.Millisecond)
		}
		for _, d := range descs[:n] {
			f := u.Bytes(d)
			if tu, r := rules.ParseFrame(f, uint32(ib)); r == rules.ReasonNone && tu.HasPorts {
				got[tu.Dport]++
			} else {
				got[0]++
			}
			total++
		}
		if r := sock.Recycle(descs[:n]); r < n {
			u.FreeDescs(descs[r:n])
		}
		if total < counts[7001] {
			return fmt.Errorf("AF_XDP socket received %v, want %d frames to port 7001", got, counts[7001])
		}
		return nil
	})
	if got[7001] != counts[7001] || total != counts[7001] {
		t.Errorf("AF_XDP socket received %v, want %d frames to port 7001 only", got, counts[7001])
	}
	// The UDP socket: exactly the 7003 flow.
	buf := make([]byte, 64)
	for i := range counts[7003] {
		rx.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := rx.ReadFrom(buf); err != nil {
			t.Fatalf("UDP socket: datagram %d of %d: %v", i, counts[7003], err)
		}
	}
	rs, err := s.RuleStats()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		want := map[string]int{"to-xsk": counts[7001], "drop": counts[7002], "stack": counts[7003]}[r.Rule.Name]
		if r.Packets != uint64(want) {
			t.Errorf("rule %s: %d packets, want %d", r.Rule.Name, r.Packets, want)
		}
		if r.Packets > 0 && r.Bytes != r.Packets*uint64(14+20+8+5) {
			t.Errorf("rule %s: %d bytes for %d packets", r.Rule.Name, r.Bytes, r.Packets)
		}
	}
	st, err := sock.Stats()
	if err != nil {
		t.Fatal(err)
	}
	perRule := map[string]uint64{}
	for _, r := range rs {
		perRule[r.Rule.Name] = r.Packets
	}
	t.Logf("AF_XDP socket got %v; rule counters %v; socket stats %+v", got, perRule, st)
}
