package bench

import (
	"slices"
	"testing"
)

// TestReceiversTable: every receiver has one name, is either run in
// process or a separate program, a reflector only in process; every
// comparison compares receivers of the matrix; the ceiling comes first.
func TestReceiversTable(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range receivers {
		if seen[r.name] {
			t.Errorf("%s: listed twice", r.name)
		}
		seen[r.name] = true
		if (r.run == nil) == (r.ext.argv == nil) {
			t.Errorf("%s: in process %v, a separate program %v: want one of them", r.name, r.run != nil, r.ext.argv != nil)
		}
		if r.echo && (r.run == nil || r.feed != feedLive) {
			t.Errorf("%s: a reflector must run in process, fed by nothing of its own", r.name)
		}
	}
	names := Receivers()
	if len(names) == 0 || names[0] != "xdp-drop" {
		t.Fatalf("Receivers() = %v, want the ceiling, xdp-drop, first", names)
	}
	if slices.Contains(names, "udp-echo") {
		t.Error("the latency matrix's reflector udp-echo is listed as a receiver")
	}
	for _, c := range comparisons {
		for _, rx := range []string{c.num, c.den} {
			if !slices.Contains(names, rx) {
				t.Errorf("comparison %q: %s is not a receiver", c.what, rx)
			}
		}
	}
	if err := ReceiverMain([]string{"--kind", "xdpipe-spin"}); err == nil || err.Error() != `unknown receiver kind "xdpipe-spin"` {
		t.Errorf("ReceiverMain of a separate program's kind: %v, want it refused", err)
	}
}
