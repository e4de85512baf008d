package testutil

import (
	"strings"
	"testing"
)

func TestMain(m *testing.M) { RunCheckingLeaks(m) }

func TestLinkPairPings(t *testing.T) {
	p := NewLinkPair(t, LinkOptions{Queues: 2})
	out := p.A.NS.MustRun(t, "ping", "-c1", "-W2", p.B.IP.String())
	if !strings.Contains(out, "1 received") {
		t.Fatalf("ping over the veth pair failed:\n%s", out)
	}
	if idx := p.B.Ifindex(t); idx <= 0 {
		t.Fatalf("ifindex of %s in %s: %d", p.B.Name, p.B.NS.Name, idx)
	}
}
