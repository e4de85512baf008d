package bench

import (
	"bytes"
	"context"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// perf report's table as perf 6.1 prints it, header and all.
const perfReport = `# To display the perf.data header info, please use --header/--header-only options.
#
#
# Total Lost Samples: 0
#
# Samples: 12K of event 'cpu-clock:pppH'
# Event count (accounting): 3011000000
#
# Overhead  Symbol
# ........  ..............................
#
    39.98%  [k] _raw_spin_lock
     6.96%  [k] __pi_memcpy
     0.52%  [.] runtime.futex
     0.01%  [k] bpf_prog_c40c6253c46771b4_xdpipe_gen_tx


#
# (Tip: For hierarchical output, try: perf report --hierarchy)
#
`

func TestParsePerfReport(t *testing.T) {
	got := parsePerfReport(perfReport)
	want := []Symbol{{"_raw_spin_lock", 39.98}, {"__pi_memcpy", 6.96}, {"(user) runtime.futex", 0.52},
		{"bpf_prog_c40c6253c46771b4_xdpipe_gen_tx", 0.01}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parsed %+v\nwant %+v", got, want)
	}
	if s := parsePerfReport("# only comments\n\n"); s != nil {
		t.Fatalf("a report without samples gave %+v", s)
	}
}

// TestMeanProfile: the shares are averaged over the rounds that have a
// profile, a symbol absent from a round's top counting 0 there, and the
// most samples come first.
func TestMeanProfile(t *testing.T) {
	got := meanProfile([][]Symbol{
		{{"a", 40}, {"b", 20}},
		nil, // a round that failed
		{{"b", 30}, {"c", 10}},
	}, 2)
	want := []Symbol{{"b", 25}, {"a", 20}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("mean %+v, want %+v", got, want)
	}
	if p := meanProfile([][]Symbol{nil, nil}, 3); p != nil {
		t.Fatalf("no profiles gave %+v", p)
	}
}

// TestMatrixProfilesTheGenerator runs one cell under perf and checks that
// the generator's CPU was seen sending: the live-frames path is XDP in
// the kernel, so its symbols must be there.
func TestMatrixProfilesTheGenerator(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "perf")
	perf, _ := exec.LookPath("perf")
	var log bytes.Buffer
	c := ciMatrix(&log)
	c.Receivers = []string{"xdp-drop"}
	c.Perf, c.PerfTop = perf, 20
	rep, err := Run(context.Background(), c)
	t.Log("\n" + log.String())
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	if r.Error != "" {
		t.Fatal(r.Error)
	}
	if n := len(r.GenProfile); n == 0 || n > 20 {
		t.Fatalf("%d symbols in the generator's profile, want 1 to 20", n)
	}
	var sum float64
	xdp := false
	for _, s := range r.GenProfile {
		sum += s.Percent
		xdp = xdp || strings.Contains(s.Name, "xdp")
	}
	if sum > 100.01 {
		t.Fatalf("shares add up to %.2f%%: %+v", sum, r.GenProfile)
	}
	if !xdp {
		t.Fatalf("no XDP symbol among the generator CPU's top 20: %s", profileText(r.GenProfile))
	}
	var out bytes.Buffer
	rep.WriteProfiles(&out)
	if !strings.Contains(out.String(), "xdp-drop") {
		t.Fatalf("WriteProfiles wrote %q", out.String())
	}
}
