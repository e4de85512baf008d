package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// The test binary doubles as the receiver child: the harness starts it
// again with XDPIPE_BENCH_CHILD=1.
func TestMain(m *testing.M) {
	if os.Getenv("XDPIPE_BENCH_CHILD") == "1" {
		if err := ReceiverMain(os.Args[1:]); err != nil {
			os.Stderr.WriteString("receiver: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	testutil.RunCheckingLeaks(m)
}

// ciMatrix is the CI matrix: one size, two receivers, one second each,
// this test binary as the receiver child.
func ciMatrix(log *bytes.Buffer) Config {
	c := Config{
		Receivers: []string{"xdp-drop", "udp"},
		Sizes:     []int{64},
		Duration:  time.Second,
		Self:      []string{os.Args[0]},
		Env:       []string{"XDPIPE_BENCH_CHILD=1"},
		Log:       log,
	}
	c.GenCPU, c.RxCPU = DefaultCPUs()
	return c
}

// TestShortMatrix runs the CI matrix with the ceiling fed by the bare
// generator added (three receivers), and checks the ratios and the JSON it
// writes (package chart draws it).
func TestShortMatrix(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	var log bytes.Buffer
	c := ciMatrix(&log)
	c.Receivers = []string{"xdp-drop", "xdp-drop-bare", "udp"}
	c.Retries = 1
	rep, err := Run(context.Background(), c)
	t.Log("\n" + log.String())
	if err != nil {
		t.Fatal(err)
	}
	var tab bytes.Buffer
	if err := rep.WriteTable(&tab); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + tab.String())
	if len(rep.Results) != 3 {
		t.Fatalf("%d results, want 3", len(rep.Results))
	}
	for _, r := range rep.Results {
		if r.Error != "" {
			t.Fatalf("%s: %s", r.Receiver, r.Error)
		}
		if r.Received == 0 || r.Sent == 0 {
			t.Fatalf("%s: sent %d received %d", r.Receiver, r.Sent, r.Received)
		}
		if r.Received > r.Sent {
			t.Fatalf("%s: received %d of %d sent", r.Receiver, r.Received, r.Sent)
		}
	}
	if rep.Results[0].RatioToCeiling != 1 {
		t.Fatalf("ceiling's ratio %v, want 1", rep.Results[0].RatioToCeiling)
	}
	if e := rep.Results[1].Engine; e != "bare" {
		t.Fatalf("xdp-drop-bare fed by %q, want the bare generator", e)
	}
	if !slices.ContainsFunc(rep.Ratios, func(r Ratio) bool { return r.What == "gen live / bare live frames" && r.Bar == 0.9 }) {
		t.Fatalf("no generator ratio in %+v", rep.Ratios)
	}
	jp := filepath.Join(dir, "bench.json")
	if err := rep.WriteJSON(jp); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(jp)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || len(back.Results) != 3 {
		t.Fatalf("JSON does not read back: %v (%d results)", err, len(back.Results))
	}
}

// TestRepeatMatrix runs the CI matrix twice: the second round runs the
// cells in the other order, and the report folds both rounds.
func TestRepeatMatrix(t *testing.T) {
	testutil.RequireRoot(t)
	var log bytes.Buffer
	c := ciMatrix(&log)
	c.Repeat = 2
	rep, err := Run(context.Background(), c)
	t.Log("\n" + log.String())
	if err != nil {
		t.Fatal(err)
	}
	var tab, rat bytes.Buffer
	if err := rep.WriteTable(&tab); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteRatios(&rat); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + tab.String() + "\n" + rat.String())
	if len(rep.Rounds) != 2 || len(rep.Results) != 2 {
		t.Fatalf("%d rounds, %d cells, want 2 and 2", len(rep.Rounds), len(rep.Results))
	}
	for i, round := range rep.Rounds {
		if len(round) != 2 || round[0].Receiver != "xdp-drop" || round[1].Receiver != "udp" {
			t.Fatalf("round %d: %+v, want xdp-drop then udp (the configured order)", i, round)
		}
		if round[0].RatioToCeiling != 1 || round[1].RatioToCeiling <= 0 {
			t.Fatalf("round %d: ratios to the ceiling %v and %v", i, round[0].RatioToCeiling, round[1].RatioToCeiling)
		}
	}
	// The log names the cells as they ran: round 2 starts with udp.
	second := log.String()[strings.Index(log.String(), "round 2 of 2"):]
	if u, x := strings.Index(second, "udp "), strings.Index(second, "xdp-drop "); u < 0 || x < 0 || u > x {
		t.Fatalf("round 2 did not run udp first:\n%s", second)
	}
	for _, r := range rep.Results {
		if r.Error != "" || r.Spread == nil || r.Spread.Rounds != 2 {
			t.Fatalf("%s: %s, spread %+v", r.Receiver, r.Error, r.Spread)
		}
		if s := r.Spread.Fps; s.Min <= 0 || s.Min > s.Median || s.Median > s.Max || r.Fps != s.Median {
			t.Fatalf("%s: rate spread %+v, figure %v", r.Receiver, s, r.Fps)
		}
	}
	if rep.Results[0].Spread.RatioToCeiling != (Spread{1, 1, 1}) {
		t.Fatalf("the ceiling's ratio %+v, want 1 in every round", rep.Results[0].Spread.RatioToCeiling)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{Receivers: []string{"nope"}},
		{Sizes: []int{10}},
		{Duration: -time.Second},
		{Repeat: -1},
		{Perf: "perf"}, // a profile of the generator's CPU: the zero GenCPU pins nothing
	} {
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func TestParseRxdropSummary(t *testing.T) {
	out := "   1.0s  rx   3.10 Mpps ...\nsummary: 3100000 packets, 198400000 bytes in 1.00s:   3.10 Mpps, 1587.2 Mbit/s\ncpu: 1.00s\n"
	r, err := parseRxdropSummary(out, 64)
	if err != nil || r.Frames != 3100000 || r.Bytes != 198400000 {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := parseRxdropSummary("nothing", 64); err == nil {
		t.Fatal("no error without a summary")
	}
	r, err = parseRunSummary("run: ready\nrun: queue 0: received 221428, transmitted 221428, dropped 0 (verdict 0)\n", 64, "l2fwd")
	if err != nil || r.Frames != 221428 || r.Bytes != 221428*64 {
		t.Fatalf("%+v %v", r, err)
	}
}

// requireCToolchain gates on what building hack/xsk-c-peer needs
// (hack/deps.sh bench): make, cc and libxdp's headers.
func requireCToolchain(t *testing.T) {
	t.Helper()
	testutil.RequireTool(t, "make", "cc")
	if _, err := os.Stat("/usr/include/xdp/xsk.h"); err != nil {
		testutil.SkipOrFail(t, "no libxdp headers to build hack/xsk-c-peer (hack/deps.sh bench): %v", err)
	}
}

var transmittedBack = regexp.MustCompile(`transmitted back (\d+)`)

// TestXskCPeer builds hack/xsk-c-peer and runs both its modes, then the
// ceiling fed by gen's xsk engine, one second each at 64 bytes on a fresh
// testbed. The last cell also shows that the peer left no XDP program
// behind: xdp-drop could not attach next to one.
func TestXskCPeer(t *testing.T) {
	testutil.RequireRoot(t)
	requireCToolchain(t)
	const dir = "../hack/xsk-c-peer"
	bin, err := buildXskC(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("built %s: %v", bin, err)
	}
	var log bytes.Buffer
	rep, err := Run(context.Background(), Config{
		Receivers: []string{"c-xsk-rxdrop", "c-xsk-poll", "c-xsk-l2fwd", "xdp-drop-xsktx"},
		Sizes:     []int{64},
		Duration:  time.Second,
		Self:      []string{os.Args[0]},
		Env:       []string{"XDPIPE_BENCH_CHILD=1"},
		XskCPeer:  dir,
		Log:       &log,
	})
	t.Log("\n" + log.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 4 {
		t.Fatalf("%d results, want 4", len(rep.Results))
	}
	for _, r := range rep.Results {
		t.Logf("%s: sent %d received %d (%s)", r.Receiver, r.Sent, r.Received, r.Note)
		if r.Error != "" {
			t.Fatalf("%s: %s", r.Receiver, r.Error)
		}
		if r.Received == 0 || r.Sent == 0 || r.Received > r.Sent {
			t.Fatalf("%s: sent %d received %d", r.Receiver, r.Sent, r.Received)
		}
		switch r.Receiver {
		case "c-xsk-poll":
			if !strings.Contains(r.Note, "poll(2) when idle") {
				t.Fatalf("c-xsk-poll: the peer did not run in poll mode: %q", r.Note)
			}
		case "c-xsk-l2fwd":
			m := transmittedBack.FindStringSubmatch(r.Note)
			if m == nil {
				t.Fatalf("c-xsk-l2fwd: no transmitted count in %q", r.Note)
			}
			if n, _ := strconv.ParseUint(m[1], 10, 64); n == 0 {
				t.Fatalf("c-xsk-l2fwd transmitted nothing back (%s)", r.Note)
			}
		case "xdp-drop-xsktx":
			if r.Engine != "xsk" {
				t.Fatalf("xdp-drop-xsktx fed by %q, want the xsk engine", r.Engine)
			}
		}
	}
}

func TestXskCPeerFrameLimit(t *testing.T) {
	for _, rx := range []string{"c-xsk-rxdrop", "c-xsk-poll", "c-xsk-l2fwd"} {
		r, _ := receiverNamed(rx)
		_, err := r.ext.argv(&Config{}, &testbed{}, 9000)
		if err == nil || !strings.Contains(err.Error(), "multi-buffer") {
			t.Fatalf("%s at 9000 bytes: %v, want a multi-buffer skip", rx, err)
		}
	}
}

// TestCompare: ratios come from cells of the same size, skip cells that
// failed or received nothing, and say whether each bar is met.
func TestCompare(t *testing.T) {
	rep := &Report{Sizes: []int{64, 1500, 9000}, Results: []Result{
		{Receiver: "xdp-drop", Size: 64, Engine: "live", Fps: 4.6e6},
		{Receiver: "xdp-drop-bare", Size: 64, Engine: "bare", Fps: 5e6},
		{Receiver: "xdpipe-spin", Size: 64, Engine: "live", Fps: 6e6},
		{Receiver: "xdpipe-wakeup", Size: 64, Engine: "live", Fps: 5.7e6},
		{Receiver: "xdpipe-l2fwd", Size: 64, Engine: "live", Fps: 0.6e6},
		{Receiver: "udp", Size: 64, Engine: "live", Fps: 0.3e6},
		{Receiver: "xdpipe-spin", Size: 1500, Engine: "live", Fps: 3e6},
		{Receiver: "xdpipe-wakeup", Size: 1500, Engine: "live", Fps: 2.4e6},
		{Receiver: "xdpipe-l2fwd", Size: 1500, Error: "skipped"},
		{Receiver: "udp", Size: 1500, Engine: "live"},
		// The slow xsk generator: every receiver keeps up, no bar applies.
		{Receiver: "xdpipe-spin", Size: 9000, Engine: "xsk", Fps: 0.15e6},
		{Receiver: "udp", Size: 9000, Engine: "xsk", Fps: 0.15e6},
	}}
	got := map[string]Ratio{}
	for _, r := range rep.Compare() {
		got[fmt.Sprint(r.What, "@", r.Size)] = r
	}
	want := map[string]struct {
		v   float64
		met bool
	}{
		"gen live / bare live frames@64":   {0.92, true},
		"rxdrop spin / Go UDP socket@64":   {20, true},
		"rxdrop wakeup / spin@64":          {0.95, true},
		"l2fwd / rxdrop@64":                {0.1, false},
		"rxdrop wakeup / spin@1500":        {0.8, false},
		"rxdrop spin / Go UDP socket@9000": {1, false},
	}
	if len(got) != len(want) {
		t.Errorf("got %d ratios, want %d: %v", len(got), len(want), got)
	}
	for k, w := range want {
		r, ok := got[k]
		if !ok || math.Abs(r.Value-w.v) > 1e-9 || r.Met != w.met {
			t.Errorf("%s: got %+v, want value %v met %v", k, r, w.v, w.met)
		}
	}
	var b strings.Builder
	if err := rep.WriteRatios(&b); err != nil {
		t.Fatal(err)
	}
	if got["rxdrop spin / Go UDP socket@9000"].Bar != 0 {
		t.Error("a bar applied to cells fed by the xsk engine")
	}
	if !strings.Contains(b.String(), "bar 0.7: NOT met") || !strings.Contains(b.String(), "bar 5: met") {
		t.Errorf("ratio table:\n%s", b.String())
	}
}
