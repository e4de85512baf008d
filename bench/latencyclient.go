package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/xdpipe/xdpipe/ping"
)

// The clients. Both report round trips, not halves of them: sockperf with
// --full-rtt, xdpipe ping always; both read one host's CLOCK_MONOTONIC at
// both ends.

// udpFrameOverhead is what an Ethernet frame adds to a UDP payload over
// IPv4: the Ethernet, IPv4 and UDP headers.
const udpFrameOverhead = 14 + 20 + 8

// pingClient is xdpipe ping's command line for cl, and what reads its
// output.
func pingClient(c *LatencyConfig, tb *testbed, cl *LatencyCell) ([]string, func(string, *LatencyCell) error) {
	hgrm := filepath.Join(tb.dir, "ping.hgrm")
	argv := []string{c.Xdpipe, "ping", "--iface", tb.ifA, "--dst-mac", tb.macB.String(), "--dst-ip", tb.ipB.String(),
		"--dst-port", strconv.Itoa(latencyPort), "--size", strconv.Itoa(c.Payload + udpFrameOverhead),
		"--duration", c.Duration.String(), "--hgrm", hgrm}
	if cl.Offered > 0 {
		argv = append(argv, "--rate", strconv.FormatFloat(cl.Offered, 'f', -1, 64))
	}
	return argv, func(out string, cl *LatencyCell) error {
		if err := parsePing(out, cl); err != nil {
			return err
		}
		b, err := os.ReadFile(hgrm)
		if err != nil {
			return err
		}
		cl.Dist = parseHgrm(string(b))
		return os.Remove(hgrm)
	}
}

var (
	pingSent = regexp.MustCompile(`ping: sent (\d+) in ([0-9.]+)s, received (\d+), lost (\d+)`)
	pingRTT  = regexp.MustCompile(`round trip: p50 ([0-9.]+) p90 ([0-9.]+) p99 ([0-9.]+) p99\.9 ([0-9.]+) p99\.99 ([0-9.]+) max ([0-9.]+) us \((\d+) round trips\)`)
)

// parsePing reads xdpipe ping's summary lines.
func parsePing(out string, cl *LatencyCell) error {
	m, r := pingSent.FindStringSubmatch(out), pingRTT.FindStringSubmatch(out)
	if m == nil || r == nil {
		return fmt.Errorf("no round trips in xdpipe ping's output: %s", lastLine(out))
	}
	cl.Sent, _ = strconv.ParseUint(m[1], 10, 64)
	secs, _ := strconv.ParseFloat(m[2], 64)
	cl.Received, _ = strconv.ParseUint(m[3], 10, 64)
	cl.Lost, _ = strconv.ParseUint(m[4], 10, 64)
	if secs > 0 {
		cl.Rate = float64(cl.Received) / secs
	}
	v := make([]float64, 6)
	for i := range v {
		v[i], _ = strconv.ParseFloat(r[i+1], 64)
	}
	cl.P50, cl.P90, cl.P99, cl.P999, cl.P9999, cl.Max = v[0], v[1], v[2], v[3], v[4], v[5]
	cl.Count, _ = strconv.ParseUint(r[7], 10, 64)
	return nil
}

// sockperfClient is sockperf's command line for cl: ping-pong for the
// closed loop, under-load at the offered rate with a reply to every
// message for an open loop; both log every round trip, which the parser
// reads into a histogram.
func sockperfClient(c *LatencyConfig, tb *testbed, cl *LatencyCell) ([]string, func(string, *LatencyCell) error) {
	log := filepath.Join(tb.dir, "sockperf.csv")
	secs := max(1, int(math.Ceil(c.Duration.Seconds())))
	// The open loop's rate as sockperf takes it, whole messages a second,
	// and the schedule the histogram puts its messages on (0: closed loop).
	mode, mps := []string{"ping-pong"}, 0
	if cl.Offered > 0 {
		mps = max(1, int(cl.Offered))
		mode = []string{"under-load", "--mps", strconv.Itoa(mps), "--reply-every", "1"}
	}
	argv := append(append([]string{c.Sockperf}, mode...), "-i", tb.ipB.String(), "-p", strconv.Itoa(latencyPort),
		"-m", strconv.Itoa(c.Payload), "-t", strconv.Itoa(secs), "--full-rtt", "--full-log", log)
	return argv, func(out string, cl *LatencyCell) error {
		if err := parseSockperf(out, cl); err != nil {
			return err
		}
		f, err := os.Open(log)
		if err != nil {
			return err
		}
		defer os.Remove(log)
		defer f.Close()
		h, err := sockperfHistogram(f, float64(mps))
		if err != nil {
			return err
		}
		fillFromHistogram(cl, h)
		return nil
	}
}

var (
	sockperfValid   = regexp.MustCompile(`\[Valid Duration\] RunTime=([0-9.]+) sec; SentMessages=(\d+); ReceivedMessages=(\d+)`)
	sockperfDropped = regexp.MustCompile(`# dropped messages = (\d+)`)
)

// parseSockperf reads the counts of sockperf's measured part (it leaves
// out a warm-up and the last messages).
func parseSockperf(out string, cl *LatencyCell) error {
	m := sockperfValid.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("no measured run in sockperf's output: %s", lastLine(out))
	}
	secs, _ := strconv.ParseFloat(m[1], 64)
	cl.Sent, _ = strconv.ParseUint(m[2], 10, 64)
	cl.Received, _ = strconv.ParseUint(m[3], 10, 64)
	if d := sockperfDropped.FindStringSubmatch(out); d != nil {
		cl.Lost, _ = strconv.ParseUint(d[1], 10, 64)
	}
	if secs > 0 {
		cl.Rate = float64(cl.Received) / secs
	}
	return nil
}

// sockperfHistogram reads sockperf's --full-log (with --full-rtt: rows
// "packet, txTime(sec), rxTime(sec), rtt(usec)") into a histogram of round
// trips in nanoseconds. With mps, the rate of an open loop, each round
// trip is taken from the time the message was due by the schedule that
// the first one starts, when it left later than that: the correction for
// coordinated omission xdpipe ping makes, so that a stalled sender counts
// against every message it delayed.
func sockperfHistogram(f *os.File, mps float64) (*hdrhistogram.Histogram, error) {
	h := ping.NewHistogram()
	sc := bufio.NewScanner(f)
	first, t0 := int64(-1), 0.0
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ",")
		if len(fields) != 4 {
			continue
		}
		pkt, err := strconv.ParseInt(strings.TrimSpace(fields[0]), 10, 64)
		if err != nil {
			continue // the header row
		}
		tx, err1 := strconv.ParseFloat(strings.TrimSpace(fields[1]), 64)
		rx, err2 := strconv.ParseFloat(strings.TrimSpace(fields[2]), 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("sockperf log: bad row %q", sc.Text())
		}
		if rx <= 0 {
			continue // no reply: sockperf counts it as dropped
		}
		from := tx
		if mps > 0 {
			if first < 0 {
				first, t0 = pkt, tx
			}
			from = min(tx, t0+float64(pkt-first)/mps)
		}
		_ = h.RecordValue(int64(math.Round((rx - from) * 1e9)))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if h.TotalCount() == 0 {
		return nil, errors.New("sockperf logged no round trips")
	}
	return h, nil
}

// fillFromHistogram sets cl's percentiles and distribution from h (in
// nanoseconds).
func fillFromHistogram(cl *LatencyCell, h *hdrhistogram.Histogram) {
	us := func(v int64) float64 { return float64(v) / 1e3 }
	cl.P50, cl.P90, cl.P99 = us(h.ValueAtQuantile(50)), us(h.ValueAtQuantile(90)), us(h.ValueAtQuantile(99))
	cl.P999, cl.P9999, cl.Max = us(h.ValueAtQuantile(99.9)), us(h.ValueAtQuantile(99.99)), us(h.Max())
	cl.Count = uint64(h.TotalCount())
	var b bytes.Buffer
	_, _ = h.PercentilesPrint(&b, 5, 1e3)
	cl.Dist = parseHgrm(b.String())
}

// parseHgrm reads the rows of HdrHistogram's .hgrm text (value,
// percentile as a fraction, count, 1/(1-percentile)) as percentiles.
func parseHgrm(s string) []DistPoint {
	var d []DistPoint
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		v, err1 := strconv.ParseFloat(f[0], 64)
		p, err2 := strconv.ParseFloat(f[1], 64)
		if err1 != nil || err2 != nil {
			continue // the header
		}
		d = append(d, DistPoint{Percentile: p * 100, Micros: v})
	}
	return d
}
