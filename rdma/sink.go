package rdma

import (
	"context"
	"errors"
	"io"
	"runtime"
	"time"

	"github.com/xdpipe/xdpipe/internal/monotime"
)

// Sink drains a Receiver: it counts packets and bytes, feeds a sequence
// tracker and an optional tap. The zero value counts only.
type Sink struct {
	// Seq, if set, sees every packet (gen.Tracker checks the generator's
	// sequence numbers: loss, duplicates, reordering).
	Seq SeqObserver
	// Tap, if set, sees every packet too, e.g. to write a pcap. The slice
	// is valid only during the call.
	Tap func(pkt []byte)
	// Burst is the most packets per Receive (default 64).
	Burst int
	// Progress, if set, is called about once a second with the totals so far.
	Progress func(SinkStats)
	// Spin busy-polls also when idle, like ib_send_bw's server: one whole
	// core, the lowest latency. Otherwise an idle Sink yields, then sleeps
	// 50us between polls.
	Spin bool
}

// SinkStats are what a Sink counted.
type SinkStats struct {
	Packets, Bytes uint64
	Elapsed        time.Duration // from the first packet to the last
}

// Gbps is the throughput in Gbit/s over Elapsed.
func (s SinkStats) Gbps() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Bytes) * 8 / s.Elapsed.Seconds() / 1e9
}

// PPS is the packet rate over Elapsed.
func (s SinkStats) PPS() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Packets) / s.Elapsed.Seconds()
}

// Run receives until the sender closes the connection (it then returns the
// totals and nil), the connection fails (an error wrapping ErrDisconnected
// if the sender went away without closing), or ctx ends (ctx's error). It
// busy-polls while packets flow and, unless Spin, backs off when idle.
func (s *Sink) Run(ctx context.Context, r *Receiver) (SinkStats, error) {
	burst := s.Burst
	if burst <= 0 {
		burst = 64
	}
	pkts := make([][]byte, burst)
	var st SinkStats
	var first, last time.Time
	idle := 0
	nextReport := time.Now().Add(time.Second)
	for {
		n, err := r.Receive(pkts)
		if n > 0 {
			now := time.Now() // once per burst
			if first.IsZero() {
				first = now
			}
			last = now
			mono := monotime.At(now)
			for _, p := range pkts[:n] {
				st.Bytes += uint64(len(p))
				if s.Seq != nil {
					s.Seq.Observe(p, mono)
				}
				if s.Tap != nil {
					s.Tap(p)
				}
			}
			st.Packets += uint64(n)
			idle = 0
			if s.Progress != nil && now.After(nextReport) {
				st.Elapsed = last.Sub(first)
				s.Progress(st)
				nextReport = now.Add(time.Second)
			}
			continue
		}
		st.Elapsed = last.Sub(first)
		if errors.Is(err, io.EOF) {
			return st, nil
		}
		if err != nil {
			return st, err
		}
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		idle++
		switch {
		case s.Spin:
		case idle < 1024:
			runtime.Gosched()
		default:
			time.Sleep(50 * time.Microsecond)
		}
	}
}
