package testutil

import (
	"os"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { RunCheckingLeaks(m) }

// TestLinkPairPings pings across a pair of either kind (one namespace per
// end, then both in one), and checks that the pair's cleanup removed its
// namespaces and gave lent NICs back under their own names.
func TestLinkPairPings(t *testing.T) {
	RequireTool(t, "ping")
	var made []string
	for _, opts := range []LinkOptions{{Queues: 2}, {OneNS: true}} {
		t.Run("", func(t *testing.T) {
			p := NewLinkPair(t, opts)
			made = append(made, p.A.NS.Name, p.B.NS.Name)
			out := p.A.NS.MustRun(t, "ping", "-c1", "-W2", p.B.IP.String())
			if !strings.Contains(out, "1 received") {
				t.Fatalf("ping over the pair failed:\n%s", out)
			}
			if idx := p.B.Ifindex(t); idx <= 0 {
				t.Fatalf("ifindex of %s in %s: %d", p.B.Name, p.B.NS.Name, idx)
			}
		})
	}
	netns := MustRun(t, "ip", "netns", "list")
	for _, ns := range made {
		if strings.Contains(netns, ns) {
			t.Errorf("namespace %s left behind:\n%s", ns, netns)
		}
	}
	if Link() == NIC {
		for _, nic := range strings.Fields(os.Getenv("XDPIPE_TEST_NICS")) {
			MustRun(t, "ip", "link", "show", "dev", nic)
		}
	}
}
