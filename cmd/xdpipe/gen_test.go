package main

import (
	"strings"
	"testing"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// TestGenBadInput: each bad input gives a one-line error naming the
// cause and exit status 1, before anything is sent (the output has no
// "sent" summary; validation runs before an engine exists).
func TestGenBadInput(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	ok := genFrom(p, 10, "1k")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--size", "20"}, "frame size 20 is below 64"},
		{[]string{"--size", "9001"}, "above 9000"},
		{[]string{"--size", "1600"}, "MTU 1500"},
		{[]string{"--size", "4000", "--engine", "xsk"}, "MTU 1500"},
		{[]string{"--rate", "0"}, "want a positive rate"},
		{[]string{"--rate", "1e12"}, "more than 10^9 frames/s"},
		{[]string{"--queue", "99"}, "queue 99: " + p.A.Name + " has 1 RX queues (0 to 0)"},
		{[]string{"--rate", "fast"}, "not a number"},
		{[]string{"--engine", "dpdk"}, `unknown engine "dpdk"`},
		{[]string{"--dst-mac", "02:00:zz:00:00:01"}, "--dst-mac"},
		{[]string{"--proto", "sctp"}, "unknown protocol"},
		{[]string{"--proto", "udp6"}, "needs IPv6 addresses"},
		{[]string{"--iface", "nope0"}, `interface "nope0"`},
		{[]string{"--flows", "0"}, "--flows 0 out of range"},
		{[]string{"--bind", "fast", "--engine", "xsk"}, `--bind: unknown bind mode "fast"`},
		{[]string{"--bind", "copy"}, "--bind copy: only the xsk engine binds an AF_XDP socket; add --engine xsk"},
		{[]string{"--bind", "zerocopy", "--engine", "xsk"},
			"bind " + p.A.Name + " queue 0: zero-copy: driver veth has no xsk-zerocopy in its xdp-features; use copy or auto mode"},
		{[]string{"--queue", "1", "--engine", "xsk"}, "bind " + p.A.Name + " queue 1: " + p.A.Name + " has 1 active queues (0 to 0); pick one of them or raise the count with ethtool -L " + p.A.Name},
		// Nothing can leave: B has no XDP program, so veth drops what
		// XDP_TX hands it.
		{nil, p.A.Name + " cannot send XDP frames: its veth peer has no XDP program"},
	} {
		args := append(append([]string{}, ok...), c.args...)
		out, code := xdpipeIn(t, p.A.NS, args...)
		if code != 1 || !strings.Contains(out, c.want) || strings.Count(strings.TrimSpace(out), "\n") != 0 || strings.Contains(out, "sent ") {
			t.Errorf("xdpipe %s: exit %d, output %q; want exit 1 and one line containing %q",
				strings.Join(c.args, " "), code, out, c.want)
		}
	}
	// With a program on B frames leave, from both engines; the xsk
	// engine's start line shows the features and why auto bound copy mode.
	p.B.AttachPass(t)
	if out, code := xdpipeIn(t, p.A.NS, ok...); code != 0 || !strings.Contains(out, "sent 10 frames") {
		t.Fatalf("xdpipe gen: exit %d\n%s", code, out)
	}
	out, code := xdpipeIn(t, p.A.NS, append(ok, "--engine", "xsk")...)
	if code != 0 || !strings.Contains(out, "sent 10 frames") ||
		!strings.Contains(out, "AF_XDP socket on queue 0 in copy mode (auto: driver veth has no xsk-zerocopy in its xdp-features), xdp-features basic,redirect,") {
		t.Fatalf("xdpipe gen --engine xsk: exit %d\n%s", code, out)
	}
}
