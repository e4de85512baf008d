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
	p := testutil.NewVethPair(t, testutil.VethOptions{})
	ok := []string{"gen", "--iface", p.A.Name, "--dst-mac", p.B.MAC.String(), "--dst-ip", p.B.IP.String(), "--count", "10"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--size", "20"}, "frame size 20 is below 64"},
		{[]string{"--size", "9001"}, "above 9000"},
		{[]string{"--size", "1600"}, "MTU 1500"},
		{[]string{"--size", "4000", "--engine", "xsk"}, "MTU 1500"},
		{[]string{"--rate", "0"}, "want a positive rate"},
		{[]string{"--rate", "fast"}, "not a number"},
		{[]string{"--engine", "dpdk"}, `unknown engine "dpdk"`},
		{[]string{"--dst-mac", "02:00:zz:00:00:01"}, "--dst-mac"},
		{[]string{"--proto", "sctp"}, "unknown protocol"},
		{[]string{"--proto", "udp6"}, "needs IPv6 addresses"},
		{[]string{"--iface", "nope0"}, `interface "nope0"`},
		{[]string{"--flows", "0"}, "--flows 0 out of range"},
	} {
		args := append(append([]string{}, ok...), c.args...)
		out, code := xdpipeIn(t, p.A.NS, args...)
		if code != 1 || !strings.Contains(out, c.want) || strings.Count(strings.TrimSpace(out), "\n") != 0 || strings.Contains(out, "sent ") {
			t.Errorf("xdpipe %s: exit %d, output %q; want exit 1 and one line containing %q",
				strings.Join(c.args, " "), code, out, c.want)
		}
	}
	// And the good command does send.
	if out, code := xdpipeIn(t, p.A.NS, ok...); code != 0 || !strings.Contains(out, "sent 10 frames") {
		t.Fatalf("xdpipe gen: exit %d\n%s", code, out)
	}
}
