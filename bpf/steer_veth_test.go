//go:build linux

package bpf

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/rules"
)

// TestSteerLiveUpdate: UDP traffic flows from A to B while the rule set
// flips 20 times between "drop port 9001" and "pass port 9001 (priority 5)
// before that drop". The default action is drop and a catch-all passes the
// rest, so a frame that saw a half-written rule set would land on the
// no-match counter. Nothing may be lost: the drop rule's counter plus what
// the UDP socket received equals what was sent, and no-match stays 0.
func TestSteerLiveUpdate(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	s := newSteer(t)
	dst := netip.PrefixFrom(netip.AddrFrom4([4]byte(p.B.IP)), 32)
	drop := rules.Rule{Priority: 10, Name: "drop", Fields: rules.FieldProto | rules.FieldDst | rules.FieldDport,
		Proto: 17, Dst: dst, Dport: rules.PortRange{Lo: 9001, Hi: 9001}, Action: rules.ActionDrop}
	pass := rules.Rule{Priority: 5, Name: "pass", Fields: rules.FieldProto | rules.FieldDport,
		Proto: 17, Dport: rules.PortRange{Lo: 9000, Hi: 9010}, Action: rules.ActionPass}
	rest := rules.Rule{Priority: 100, Name: "rest", Action: rules.ActionPass}
	setDrop := &rules.Set{Default: rules.ActionDrop, Rules: []rules.Rule{drop, rest}}
	setPass := &rules.Set{Default: rules.ActionDrop, Rules: []rules.Rule{pass, drop, rest}}
	if err := s.Apply(setDrop); err != nil {
		t.Fatal(err)
	}
	// Attach only once a rule set is in: frames the kernel sends on its own
	// when a link comes up (IPv6 MLD and ND) must meet the catch-all too.
	ib := p.B.Ifindex(t)
	p.B.NS.MustDo(t, func() error {
		_, err := s.Attach(ib, AttachAuto)
		return err
	})

	var rx net.PacketConn
	p.B.NS.MustDo(t, func() (err error) {
		rx, err = net.ListenPacket("udp4", net.JoinHostPort(p.B.IP.String(), "9001"))
		return err
	})
	defer rx.Close()
	if uc, ok := rx.(*net.UDPConn); ok {
		uc.SetReadBuffer(4 << 20)
	}
	var received atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			if _, _, err := rx.ReadFrom(buf); err != nil {
				return // closed
			}
			received.Add(1)
		}
	}()

	const sent = 20000
	sendDone := make(chan error, 1)
	go func() {
		sendDone <- p.A.NS.Do(func() error {
			c, err := net.Dial("udp4", net.JoinHostPort(p.B.IP.String(), "9001"))
			if err != nil {
				return err
			}
			defer c.Close()
			msg := make([]byte, 64)
			for i := range sent {
				if _, err := c.Write(msg); err != nil {
					return fmt.Errorf("datagram %d: %w", i, err)
				}
				if i%200 == 0 {
					time.Sleep(time.Millisecond) // steady, not a burst the socket cannot hold
				}
			}
			return nil
		})
	}()
	flips := 0
	for sending := true; sending; {
		select {
		case err := <-sendDone:
			if err != nil {
				t.Fatal(err)
			}
			sending = false
		default:
			set := setPass
			if flips%2 == 1 {
				set = setDrop
			}
			if err := s.Apply(set); err != nil {
				t.Fatal(err)
			}
			flips++
			time.Sleep(2 * time.Millisecond) // paces the flips; the loop ends when the sender is done
		}
	}
	// Every datagram is dropped by the rule or read from the UDP socket.
	var dropped uint64
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		rs, err := s.RuleStats()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Rule.Name == "drop" {
				dropped = r.Packets
			}
		}
		if got := dropped + uint64(received.Load()); got < sent {
			return fmt.Errorf("dropped %d + received %d: %d of %d sent", dropped, received.Load(), got, sent)
		}
		return nil
	})
	rx.Close()
	<-done
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d flips; sent %d: dropped by rule %d, received by the UDP socket %d; no match %d, malformed %d",
		flips, sent, dropped, received.Load(), st.NoMatch.Packets, st.MalformedTotal().Packets)
	if flips < 4 {
		t.Errorf("only %d rule set flips during the traffic", flips)
	}
	if st.NoMatch.Packets != 0 || st.MalformedTotal().Packets != 0 {
		t.Errorf("frames fell through to the default action during updates: %+v", st)
	}
	if dropped+uint64(received.Load()) != sent {
		t.Errorf("dropped %d + received %d != sent %d", dropped, received.Load(), sent)
	}
	if dropped == 0 || received.Load() == 0 {
		t.Errorf("flips did not alternate the outcome: dropped %d, received %d", dropped, received.Load())
	}
}

// bpffs mounts a private bpffs for pins (so tests never touch
// /sys/fs/bpf/xdpipe of a real instance) and returns a directory in it.
func bpffs(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	testutil.MustRun(t, "mount", "-t", "bpf", "bpffs", dir)
	t.Cleanup(func() { testutil.MustRun(t, "umount", dir) })
	return filepath.Join(dir, "xdpipe")
}

// TestSteerPinned: with a PinPath the rules and the attachment survive
// Close; a second LoadSteer takes both over (rules and counters kept, link
// switched to the new program); OpenPinnedSteer reads and changes rules;
// Unpin then Close detaches.
func TestSteerPinned(t *testing.T) {
	testutil.RequireTool(t, "ping")
	pin := bpffs(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	ib := p.B.Ifindex(t)

	if _, err := OpenPinnedSteer(pin); err == nil || !strings.Contains(err.Error(), ErrNotRunning.Error()) {
		t.Fatalf("OpenPinnedSteer with nothing pinned: %v", err)
	}
	s1, err := LoadSteer(SteerOptions{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	set := &rules.Set{Rules: []rules.Rule{{Priority: 1, Name: "icmp", Fields: rules.FieldProto, Proto: 1, Action: rules.ActionDrop}}}
	if err := s1.Apply(set); err != nil {
		t.Fatal(err)
	}
	p.B.NS.MustDo(t, func() error {
		_, err := s1.Attach(ib, AttachAuto)
		return err
	})
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if !xdpShown(t, &p.B) {
		t.Fatal("pinned attachment gone after Close")
	}
	// The pinned program still drops pings.
	if out, _ := p.A.NS.Run("ping", "-c2", "-i0.2", "-W1", p.B.IP.String()); !strings.Contains(out, " 0 received") {
		t.Fatalf("ping not dropped by the pinned program:\n%s", out)
	}

	s2, err := LoadSteer(SteerOptions{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	p.B.NS.MustDo(t, func() error {
		_, err := s2.Attach(ib, AttachAuto)
		return err
	})
	rs, err := s2.RuleStats()
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Rule.Name != "icmp" || rs[0].Packets < 2 {
		t.Fatalf("rules after reload: %+v", rs)
	}

	c, err := OpenPinnedSteer(pin)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(&rules.Set{}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if out := p.A.NS.MustRun(t, "ping", "-c1", "-W2", p.B.IP.String()); !strings.Contains(out, "1 received") {
		t.Fatalf("ping after clearing the rules through the pins:\n%s", out)
	}

	if err := s2.Unpin(); err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if xdpShown(t, &p.B) {
		t.Fatal("XDP program still attached after Unpin and Close")
	}
	if _, err := os.Stat(pin); !os.IsNotExist(err) {
		t.Fatalf("pin directory left: %v", err)
	}
}
