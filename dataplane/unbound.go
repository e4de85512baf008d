package dataplane

import (
	"context"
	"fmt"
	"time"

	"github.com/xdpipe/xdpipe/bpf"
)

// UnboundHint is the one line that names the queues of u on iface, where
// frames arrive with no AF_XDP socket to take them, and the ways to reach
// them: a socket on every queue, or the NIC's queue count, RSS table or
// flow rules keeping the flows on the bound queues. (A driver may add RX
// queues when an XDP program attaches: virtio_net takes extra queue pairs
// for XDP_TX, and its host still hashes flows onto them.)
func UnboundHint(iface string, u bpf.Unbound) string {
	return fmt.Sprintf("frames on %s RX queues %v reach no AF_XDP socket and go to the kernel stack (%d so far): "+
		"bind a socket on every RX queue (queues: all), or keep the flows on the bound queues "+
		"(ethtool -L %s for the queue count, -X for the RSS table, -N for flow rules)",
		iface, u.Queues(), u.Total(), iface)
}

// unboundNotice decides when to say UnboundHint: once for each queue that
// starts to get frames without a socket, not every time its count grows.
type unboundNotice struct{ seen map[string]map[int]bool }

// hint returns UnboundHint when u names a queue of iface not reported
// before, else "".
func (n *unboundNotice) hint(iface string, u bpf.Unbound) string {
	if n.seen == nil {
		n.seen = map[string]map[int]bool{}
	}
	if n.seen[iface] == nil {
		n.seen[iface] = map[int]bool{}
	}
	fresh := false
	for _, c := range u {
		if !n.seen[iface][c.Queue] {
			n.seen[iface][c.Queue], fresh = true, true
		}
	}
	if !fresh {
		return ""
	}
	return UnboundHint(iface, u)
}

// unboundEvery is how often WarnUnbound looks for frames on queues without
// a socket.
const unboundEvery = time.Second

// WarnUnbound says UnboundHint through warn, looking once a second, for
// each queue that starts to get frames without a socket, reading the
// counts with read (Daemon.Unbound, or a Port's), until ctx ends. It says
// through warn too why it could not read them. Daemon.Run runs it; a
// command that drives a Port itself runs it beside its loop.
func WarnUnbound(ctx context.Context, read func() ([]IfaceUnbound, error), warn func(string)) {
	var notice unboundNotice
	every(ctx, unboundEvery, func() bool {
		ifs, err := read()
		if err != nil {
			warn("reading the counts of frames on queues without a socket: " + err.Error())
		}
		for _, iu := range ifs {
			if h := notice.hint(iu.Iface, iu.Unbound); h != "" {
				warn(h)
			}
		}
		return false
	})
}

// every calls look each interval until it returns true or ctx ends.
func every(ctx context.Context, interval time.Duration, look func() (done bool)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if look() {
			return
		}
	}
}
