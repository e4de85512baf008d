//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
)

// QueueCount is a frame count of one RX queue.
type QueueCount struct {
	Queue   int
	Packets uint64
}

// Unbound lists, in queue order, the RX queues on which frames arrived that
// the program would have redirected to an AF_XDP socket but found none
// registered: the kernel stack got them instead (see xsk.h). A NIC whose
// RSS spreads flows over more queues than have sockets sends them there.
type Unbound []QueueCount

// Total sums the counts.
func (u Unbound) Total() uint64 {
	var n uint64
	for _, c := range u {
		n += c.Packets
	}
	return n
}

// Queues lists the queues.
func (u Unbound) Queues() []int {
	q := make([]int, len(u))
	for i, c := range u {
		q[i] = c.Queue
	}
	return q
}

// String is "q2=120 q3=8", or "none".
func (u Unbound) String() string {
	if len(u) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, c := range u {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "q%d=%d", c.Queue, c.Packets)
	}
	return b.String()
}

// readUnbound sums the xsk_unbound map over CPUs, in one batch lookup: a
// lookup per queue would be MaxQueues system calls per read.
func readUnbound(m *ebpf.Map) (Unbound, error) {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("read unbound queue counts: %w", err)
	}
	keys := make([]uint32, m.MaxEntries())
	values := make([]uint64, len(keys)*cpus)
	var cursor ebpf.MapBatchCursor
	n, err := m.BatchLookup(&cursor, keys, values, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, fmt.Errorf("read unbound queue counts: %w", err)
	}
	var out Unbound
	for i, q := range keys[:n] {
		var sum uint64
		for _, v := range values[i*cpus : (i+1)*cpus] {
			sum += v
		}
		if sum > 0 {
			out = append(out, QueueCount{Queue: int(q), Packets: sum})
		}
	}
	return out, nil
}

// Unbound reads the frames that found no socket on their RX queue.
func (r *Redirect) Unbound() (Unbound, error) {
	if err := r.p.lock(); err != nil {
		return nil, err
	}
	defer r.p.mu.Unlock()
	return readUnbound(r.unbound)
}

// Unbound reads the frames a redirect rule (or default) sent towards a
// socket that found none on their RX queue.
func (s *Steer) Unbound() (Unbound, error) {
	if err := s.p.lock(); err != nil {
		return nil, err
	}
	defer s.p.mu.Unlock()
	return readUnbound(s.maps.XskUnbound)
}
