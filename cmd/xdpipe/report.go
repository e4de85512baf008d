package main

import (
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/xdpipe/xdpipe/dataplane"
	"github.com/xdpipe/xdpipe/xsk"
)

// rateReporter turns the receive counters, the socket's XDP statistics and
// the port's unbound queues into a rate line per interval and a summary at
// the end.
type rateReporter struct {
	sock      *xsk.Socket
	port      *dataplane.Port
	c         *dataplane.DropCounters
	generated func() (uint64, error) // the generated frames received so far, or nil
	start     time.Time
	startCPU  time.Duration
	last      time.Time
	lastPkts  uint64
	lastBytes uint64
}

// newRateReporter reports on p's first socket, its unbound queues and c;
// the rate line also shows the generated frames received so far if
// generated is not nil.
func newRateReporter(p *dataplane.Port, c *dataplane.DropCounters, generated func() (uint64, error)) *rateReporter {
	now := time.Now()
	return &rateReporter{sock: p.Sockets[0], port: p, c: c, generated: generated, start: now, last: now, startCPU: processCPU()}
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (r *rateReporter) xdpStats() string {
	st, err := r.sock.Stats()
	if err != nil {
		return "xdp stats: " + err.Error()
	}
	return fmt.Sprintf("rx_dropped=%d rx_ring_full=%d fill_ring_empty=%d rx_invalid=%d | unbound: %s",
		st.RxDropped, st.RxRingFull, st.RxFillRingEmptyDescs, st.RxInvalidDescs, r.unbound())
}

// unbound lists the frames on queues without a socket, or why it cannot.
func (r *rateReporter) unbound() string {
	u, err := r.port.Unbound()
	if err != nil {
		return err.Error()
	}
	return u.String()
}

// line is the rate over the interval since the last call.
func (r *rateReporter) line() string {
	now := time.Now()
	pkts, bytes := r.c.Packets.Load(), r.c.Bytes.Load()
	dt := now.Sub(r.last).Seconds()
	pps := float64(pkts-r.lastPkts) / dt
	mbps := float64(bytes-r.lastBytes) * 8 / dt / 1e6
	r.last, r.lastPkts, r.lastBytes = now, pkts, bytes
	total := fmt.Sprint(pkts)
	if r.generated != nil {
		if g, err := r.generated(); err != nil {
			total += fmt.Sprintf(" (generated: %v)", err)
		} else {
			total += fmt.Sprintf(" (generated %d)", g)
		}
	}
	return fmt.Sprintf("%7.1fs  rx %s  %9.1f Mbit/s  total %s  | %s",
		now.Sub(r.start).Seconds(), fmtRate(pps), mbps, total, r.xdpStats())
}

// summary covers the whole run, with the CPU the process spent per million
// packets (all threads: the receive loop and everything else).
func (r *rateReporter) summary() string {
	el := time.Since(r.start).Seconds()
	pkts, bytes := r.c.Packets.Load(), r.c.Bytes.Load()
	cpu := (processCPU() - r.startCPU).Seconds()
	var b strings.Builder
	fmt.Fprintf(&b, "summary: %d packets, %d bytes in %.2fs: %s, %.1f Mbit/s\n",
		pkts, bytes, el, fmtRate(float64(pkts)/el), float64(bytes)*8/el/1e6)
	perM := "n/a"
	if pkts > 0 {
		perM = fmt.Sprintf("%.3f", cpu/(float64(pkts)/1e6))
	}
	fmt.Fprintf(&b, "cpu: %.2fs (%.0f%% of one core), %s cpu-seconds per million packets\n", cpu, 100*cpu/el, perM)
	fmt.Fprintf(&b, "xdp: %s", r.xdpStats())
	return b.String()
}

// fmtRate formats packets per second with a unit.
func fmtRate(pps float64) string {
	switch {
	case pps >= 1e6:
		return fmt.Sprintf("%6.2f Mpps", pps/1e6)
	case pps >= 1e3:
		return fmt.Sprintf("%6.1f kpps", pps/1e3)
	}
	return fmt.Sprintf("%6.0f pps ", pps)
}
