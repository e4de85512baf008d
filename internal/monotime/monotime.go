// Package monotime is xdpipe's one monotonic clock: CLOCK_MONOTONIC in
// nanoseconds, the clock of bpf_ktime_get_ns and of the generator's send
// timestamps, so that times taken in the kernel, by the generator, the
// pipeline, the RDMA sink and xsk's Idler compare directly (on one host).
//
// It reads Go's monotonic clock (time.Since, vDSO-backed, itself
// CLOCK_MONOTONIC on Linux) against one clock_gettime reading taken at
// start, so a reading costs no system call. It imports only the standard
// library and x/sys, and sits in internal/ (the bottom of the package
// layout), so xsk may use it and still depend on x/sys alone.
package monotime

import (
	"time"

	"golang.org/x/sys/unix"
)

// base pairs a CLOCK_MONOTONIC reading with a time.Time.
var base = func() (b struct {
	mono int64
	t    time.Time
}) {
	var ts unix.Timespec
	b.t = time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err == nil {
		b.mono = ts.Nano()
	}
	return b
}()

// Now returns CLOCK_MONOTONIC in nanoseconds, within a microsecond of the
// kernel's reading. It allocates nothing.
func Now() int64 { return base.mono + int64(time.Since(base.t)) }

// At converts t, which must carry a monotonic reading (from time.Now), to
// Now's scale.
func At(t time.Time) int64 { return base.mono + int64(t.Sub(base.t)) }

// Wall converts a Now reading to wall-clock time (for pcap timestamps).
func Wall(mono int64) time.Time { return base.t.Add(time.Duration(mono - base.mono)) }
