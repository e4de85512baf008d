package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// externalRx is a receiver that is a separate program: xdpipe's own
// commands (rxdrop, ...) run as users run them, and the asavie/xdp peer
// built from its own module under hack/asavie-peer.
type externalRx struct {
	// argv returns the command line for one cell, or an error that skips
	// the cell (not built, frame size not supported).
	argv func(c *Config, tb *testbed, size int) ([]string, error)
	// ready reports whether a line on stdout says the receiver is set up
	// (nil: the line is "ready").
	ready func(line string) bool
	// parse extracts the result from everything the child printed on
	// stdout after ready (nil: the last line is a JSON childResult).
	parse func(out string, size int) (childResult, error)
	note  string
}

// external are the external receivers, by name.
var external = map[string]externalRx{
	"xdpipe-spin":   rxdropRx("spin"),
	"xdpipe-wakeup": rxdropRx("wakeup"),
	"xdpipe-l2fwd":  l2fwdRx(),
	"xdpipe-steer10k": {
		argv: func(c *Config, tb *testbed, size int) ([]string, error) {
			if c.Xdpipe == "" {
				return nil, errors.New("no xdpipe binary to run (Config.Xdpipe)")
			}
			f, err := tb.steerRules()
			if err != nil {
				return nil, err
			}
			return []string{c.Xdpipe, "rxdrop", "--iface", tb.ifB, "--bind", "copy", "--poll", "spin",
				"--track=false", "--interval", "1h", "--rules", f}, nil
		},
		ready: func(line string) bool { return strings.HasPrefix(line, "rxdrop: ") },
		parse: parseRxdropSummary,
		note:  "xdpipe rxdrop --rules (10,000 rules, the last matches) --bind copy --poll spin --track=false",
	},
	"asavie-xdp": asavieRx(),
}

// rxdropRx runs `xdpipe rxdrop` in copy mode with the given polling, its
// generated-traffic accounting off (the other receivers only count).
func rxdropRx(poll string) externalRx {
	return externalRx{
		argv: func(c *Config, tb *testbed, size int) ([]string, error) {
			if c.Xdpipe == "" {
				return nil, errors.New("no xdpipe binary to run (Config.Xdpipe)")
			}
			return []string{c.Xdpipe, "rxdrop", "--iface", tb.ifB, "--bind", "copy", "--poll", poll,
				"--track=false", "--interval", "1h"}, nil
		},
		ready: func(line string) bool { return strings.HasPrefix(line, "rxdrop: ") },
		parse: parseRxdropSummary,
		note:  "xdpipe rxdrop --bind copy --poll " + poll + " --track=false",
	}
}

var rxdropSummary = regexp.MustCompile(`summary: (\d+) packets, (\d+) bytes`)

func parseRxdropSummary(out string, _ int) (childResult, error) {
	m := rxdropSummary.FindStringSubmatch(out)
	if m == nil {
		return childResult{}, fmt.Errorf("no summary line in %q", lastLine(out))
	}
	f, _ := strconv.ParseUint(m[1], 10, 64)
	b, _ := strconv.ParseUint(m[2], 10, 64)
	return childResult{Frames: f, Bytes: b}, nil
}

// steerRuleCount is the rule count of the xdpipe-steer10k receiver.
const steerRuleCount = 10000

// steerRules writes (once) a rules file of steerRuleCount rules of which
// only the last, lowest-priority one matches the generated traffic (UDP to
// ipB port 9) and redirects it; the others match other destinations and
// ports and would drop.
func (t *testbed) steerRules() (string, error) {
	path := filepath.Join(t.dir, "steer10k.yaml")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	var b strings.Builder
	b.WriteString("default: pass\nmalformed: pass\nrules:\n")
	for i := range steerRuleCount - 1 {
		fmt.Fprintf(&b, "  - priority: %d\n    proto: udp\n    dst: 198.18.%d.%d/32\n    dport: %d\n    action: drop\n",
			i+1, i>>8, i&0xff, 1000+i%50000)
	}
	fmt.Fprintf(&b, "  - priority: %d\n    name: bench\n    proto: udp\n    dst: %s/32\n    dport: 9\n    action: redirect\n",
		steerRuleCount, t.ipB)
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// l2fwdRx runs `xdpipe run` with the macswap stage (DPDK l2fwd's
// macswap: every frame back out of the port it came in on), spinning, in
// copy mode, and reads its per-queue summary.
func l2fwdRx() externalRx {
	return externalRx{
		argv: func(c *Config, tb *testbed, size int) ([]string, error) {
			if c.Xdpipe == "" {
				return nil, errors.New("no xdpipe binary to run (Config.Xdpipe)")
			}
			return []string{c.Xdpipe, "run", "--iface", tb.ifB, "--queues", "0", "--stages", "macswap",
				"--poll", "spin", "--bind", "copy", "--metrics", "off", "--interval", "1h"}, nil
		},
		ready: func(line string) bool { return strings.HasPrefix(line, "run: ready") },
		parse: parseRunSummary,
		note:  "xdpipe run --stages macswap --poll spin --bind copy (l2fwd)",
	}
}

var runSummary = regexp.MustCompile(`run: queue 0: received (\d+), transmitted (\d+)`)

// parseRunSummary reads `xdpipe run`'s summary; it has no byte count, and
// every generated frame has the same size.
func parseRunSummary(out string, size int) (childResult, error) {
	m := runSummary.FindStringSubmatch(out)
	if m == nil {
		return childResult{}, fmt.Errorf("no summary line in %q", lastLine(out))
	}
	f, _ := strconv.ParseUint(m[1], 10, 64)
	tx, _ := strconv.ParseUint(m[2], 10, 64)
	return childResult{Frames: f, Bytes: f * uint64(size), Note: fmt.Sprintf("xdpipe run --stages macswap (l2fwd), spinning, copy mode; transmitted back %d", tx)}, nil
}

// asavieRx runs hack/asavie-peer, built on first use with `go build` in
// its own module (Config.AsaviePeer: the module's directory).
func asavieRx() externalRx {
	return externalRx{
		argv: func(c *Config, tb *testbed, size int) ([]string, error) {
			bin, err := buildAsavie(c.AsaviePeer)
			if err != nil {
				return nil, err
			}
			if size > 3840 {
				return nil, errors.New("asavie/xdp v0.3.3 has no multi-buffer (frames above 3840 bytes)")
			}
			return []string{bin, "--iface", tb.ifB}, nil
		},
		note: "asavie/xdp v0.3.3, copy mode, busy poll",
	}
}

var asavieBuild struct {
	sync.Mutex
	bin string
	err error
}

// buildAsavie builds the asavie peer once per process into a temporary
// directory.
func buildAsavie(dir string) (string, error) {
	asavieBuild.Lock()
	defer asavieBuild.Unlock()
	if asavieBuild.bin != "" || asavieBuild.err != nil {
		return asavieBuild.bin, asavieBuild.err
	}
	if dir == "" {
		asavieBuild.err = errors.New("asavie peer module directory not given (hack/asavie-peer)")
		return "", asavieBuild.err
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		asavieBuild.err = fmt.Errorf("asavie peer: %w", err)
		return "", asavieBuild.err
	}
	tmp, err := os.MkdirTemp("", "xdpipe-asavie-")
	if err != nil {
		asavieBuild.err = err
		return "", err
	}
	bin := filepath.Join(tmp, "asavie-peer")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		asavieBuild.err = fmt.Errorf("build asavie peer: %v: %s", err, lastLine(string(out)))
		return "", asavieBuild.err
	}
	asavieBuild.bin = bin
	return bin, nil
}
